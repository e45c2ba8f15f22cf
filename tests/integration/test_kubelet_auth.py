"""The kubelet's API (kubelet.server + kubelet.auth) in Webhook mode against a real apiserver
with Node,RBAC: no credentials is 401, a user without nodes/proxy is 403 with the kubelet's
message, the apiserver's kubelet client certificate (system:masters) and a user bound to
system:kubelet-api-admin are served; a decision follows RBAC (after its cache)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.cluster.etcd import free_port
from pkube.kubelet.auth import KubeletAuth
from pkube.kubelet.server import KubeletServer
from tests.integration.test_apiserver_authorization import as_user, secured  # noqa: F401 - the fixture
from tests.integration.test_client_tls import make_cert, pem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class KubeletThread(threading.Thread):
    """A KubeletServer for node n1 (no runtime: /pods answers from pods_fn) on its own loop,
    asking the apiserver as system:node:n1."""

    def __init__(self, api, pki):
        super().__init__(daemon=True, name="kubelet-api")
        self.api, self.pki, self.port = api, pki, free_port()
        self.ca_pem = Path(api.ca).read_text()
        self.ready, self.stopped = threading.Event(), None
        self.failure = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.failure = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.stopped = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        client = AsyncApiClient(ClientConfig(self.api.url, ca=self.ca_pem, token="n1"))
        server = KubeletServer(None, host="127.0.0.1", port=self.port, cert_dir=str(self.pki), node_name="n1",
                               pods_fn=lambda: [{"metadata": {"name": "p"}}], client_ca_file=str(self.pki / "ca.crt"),
                               tls_files=(str(self.pki / "kubelet.crt"), str(self.pki / "kubelet.key")),
                               auth=KubeletAuth(client, "n1"))
        await server.start()
        self.ready.set()
        await self.stopped.wait()
        await server.stop()
        await client.aclose()

    def stop(self) -> None:
        if self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.join(15)


@pytest.fixture(scope="module")
def kubelet(secured, tmp_path_factory):  # noqa: F811 - the imported fixture
    pki = tmp_path_factory.mktemp("kubelet-pki")
    ca = make_cert("kubelet-test-ca", ca=True)
    serving = make_cert("n1", issuer=ca, ip="127.0.0.1")
    (pki / "ca.crt").write_bytes(pem(ca[0]))
    (pki / "kubelet.crt").write_bytes(pem(serving[0]))
    (pki / "kubelet.key").write_bytes(pem(key=serving[1]))
    for user, groups in (("kube-apiserver-kubelet-client", ("system:masters",)), ("alice", ()), ("ops", ())):
        cert, key = _client_cert(ca, user, groups)
        (pki / f"{user}.crt").write_bytes(pem(cert))
        (pki / f"{user}.key").write_bytes(pem(key=key))
    thread = KubeletThread(secured, pki)
    thread.start()
    assert thread.ready.wait(30) and thread.failure is None, thread.failure
    try:
        yield f"https://127.0.0.1:{thread.port}", pki
    finally:
        thread.stop()


def _client_cert(ca, user: str, groups: tuple[str, ...]):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime as dt
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca[0].subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .sign(ca[1], hashes.SHA256()))
    return cert, key


def call(kubelet, path: str, user: str = "") -> httpx.Response:
    url, pki = kubelet
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if user:
        context.load_cert_chain(str(pki / f"{user}.crt"), str(pki / f"{user}.key"))
    with httpx.Client(verify=context, timeout=30) as http:
        return http.get(url + path)


def test_no_credentials_is_401(kubelet):
    assert call(kubelet, "/pods").status_code == 401


def test_a_user_without_nodes_proxy_is_403_with_the_kubelets_message(kubelet):
    refused = call(kubelet, "/pods", "alice")
    assert refused.status_code == 403
    assert refused.text == "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)"
    stats = call(kubelet, "/stats/summary", "alice")
    assert stats.text == "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)"


def test_the_apiservers_client_certificate_is_served(kubelet):
    answer = call(kubelet, "/pods", "kube-apiserver-kubelet-client")
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == [{"metadata": {"name": "p"}}]


def test_a_user_bound_to_the_kubelet_api_admin_role_is_served(kubelet, secured):  # noqa: F811
    with as_user(secured, "admin") as admin:
        made = admin.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json={
            "metadata": {"name": "ops-kubelet"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:kubelet-api-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ops"}]})
        assert made.status_code in (201, 409), made.text
    with as_user(secured, "admin") as admin:        # the apiserver's RBAC cache has it once a review says so
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": "ops", "resourceAttributes": {"verb": "get", "resource": "nodes",
                                                                 "subresource": "proxy", "name": "n1"}}}
        reviews = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        for _ in range(200):
            if admin.post(reviews, json=review).json()["status"]["allowed"]:
                break
    assert call(kubelet, "/pods", "ops").status_code == 200
