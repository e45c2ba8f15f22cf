"""Authentication over real TLS: `python -m pkube.apiserver` with the cluster PKI of cluster.certs,
--client-ca-file, --token-auth-file, --enable-bootstrap-token-auth and the --requestheader-*
flags as pkube up sets them (a front proxy names the user), on the test's etcd; and
apiserver.tlsscope's protocols putting the verified client certificate into the ASGI scope."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
import sys
import threading

import httpx
import pytest
import uvicorn

from pkube.api import bootstraptoken
from pkube.apiserver.auth.authn import RequestAuthenticator
from pkube.apiserver.tlsscope import TLSHttpProtocol, TLSWebSocketProtocol
from pkube.cluster import certs, pki as cluster_pki
from pkube.cluster.etcd import free_port
from tests.helpers.waiting import wait_for

PUBLIC = ("/healthz", "/livez", "/readyz", "/version")
STATIC_TOKEN = "s3cr3t-static-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A cluster PKI (CA, apiserver and component certificates, kubeconfigs) and a second,
    foreign one whose certificates the apiserver must refuse."""
    port = free_port()
    ours, foreign = tmp_path_factory.mktemp("pki"), tmp_path_factory.mktemp("foreign")
    certs.prepare(ours, f"https://127.0.0.1:{port}", "node-a")
    certs.prepare(foreign, f"https://127.0.0.1:{port}", "node-a")
    (ours / "tokens.csv").write_text(f'{STATIC_TOKEN},alice,1001,"dev,ops"\n')
    return ours, foreign, port


@pytest.fixture
def secured(etcd, pki):
    """The apiserver process; yields (base url, data dir, foreign data dir)."""
    data_dir, foreign, port = pki
    p = certs.pki_dir(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "pkube.apiserver", "--etcd-servers", etcd.endpoint, "--port", str(port),
                             "--tls-cert-file", str(p / "apiserver.crt"), "--tls-private-key-file", str(p / "apiserver.key"),
                             "--client-ca-file", str(p / "ca.crt"), "--token-auth-file", str(data_dir / "tokens.csv"),
                             "--enable-bootstrap-token-auth", "--log-level", "warning",
                             "--requestheader-client-ca-file", str(p / "front-proxy-ca.crt"),
                             "--requestheader-allowed-names", "front-proxy-client",
                             "--requestheader-username-headers", "X-Remote-User",
                             "--requestheader-group-headers", "X-Remote-Group",
                             "--requestheader-extra-headers-prefix", "X-Remote-Extra-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _ready(url, p / "ca.crt"), 30)
        assert proc.poll() is None, proc.stderr.read().decode()
        yield url, data_dir, foreign
    finally:
        proc.terminate()
        proc.wait(15)


def _ready(url, ca) -> bool:
    try:
        return httpx.get(url + "/readyz", verify=ssl.create_default_context(cafile=str(ca))).status_code == 200
    except httpx.HTTPError:
        return False


def client(data_dir, url, cert: str | None = None, token: str | None = None) -> httpx.Client:
    """A client trusting `data_dir`'s CA, presenting `cert` (a name of its pki) or `token`."""
    p = certs.pki_dir(data_dir)
    context = ssl.create_default_context(cafile=str(p / "ca.crt"))
    if cert:
        context.load_cert_chain(p / f"{cert}.crt", p / f"{cert}.key")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, verify=context, headers=headers, timeout=10)


def test_anonymous_is_401_with_kubernetes_status_except_on_health_and_version(secured):
    url, data_dir, _ = secured
    with client(data_dir, url) as anonymous:
        answer = anonymous.get("/api/v1/pods")
        assert answer.status_code == 401
        assert answer.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        assert anonymous.get("/api").status_code == 401
        assert anonymous.get("/openapi/v2").status_code == 401
        for path in PUBLIC:
            assert anonymous.get(path).status_code == 200, path


def test_a_client_certificate_of_the_cluster_ca_is_served(secured):
    url, data_dir, _ = secured
    with client(data_dir, url, cert="admin") as admin:
        assert admin.get("/api/v1/pods").status_code == 200


def test_a_client_certificate_from_another_ca_is_refused_at_the_handshake(secured):
    url, data_dir, foreign = secured
    context = ssl.create_default_context(cafile=str(certs.pki_dir(data_dir) / "ca.crt"))
    context.load_cert_chain(certs.pki_dir(foreign) / "admin.crt", certs.pki_dir(foreign) / "admin.key")
    with httpx.Client(base_url=url, verify=context, timeout=10) as intruder:
        with pytest.raises(httpx.HTTPError):
            intruder.get("/api/v1/pods")


def test_a_server_from_another_ca_is_not_trusted(secured):
    url, _, foreign = secured
    with client(foreign, url) as misled:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            misled.get("/healthz")


def test_a_static_token_works_and_a_wrong_one_is_401(secured):
    url, data_dir, _ = secured
    with client(data_dir, url, token=STATIC_TOKEN) as alice:
        assert alice.get("/api/v1/namespaces/default/configmaps").status_code == 200
    with client(data_dir, url, token="not-the-token") as wrong:
        assert wrong.get("/api/v1/namespaces/default/configmaps").status_code == 401
        assert wrong.get("/healthz").status_code == 200       # health stays public


def test_a_bootstrap_token_works_until_it_expires_and_an_expired_one_is_401(secured):
    url, data_dir, _ = secured
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = bootstraptoken.generate(datetime.timedelta(hours=1), "valid", now=now)
    expired = bootstraptoken.BootstrapToken("expird", "0123456789abcdef", now - datetime.timedelta(seconds=1))
    soon = bootstraptoken.generate(datetime.timedelta(seconds=3), "soon", now=now)
    with client(data_dir, url, cert="admin") as admin:
        for token in (valid, expired, soon):
            created = admin.post("/api/v1/namespaces/kube-system/secrets", json=token.to_secret())
            assert created.status_code == 201, created.text
    with client(data_dir, url, token=valid.token) as joiner:
        assert joiner.get("/api/v1/namespaces/default/configmaps").status_code == 200
    with client(data_dir, url, token=expired.token) as late:
        assert late.get("/api/v1/namespaces/default/configmaps").status_code == 401
    with client(data_dir, url, token=valid.id + ".0000000000000000") as guess:
        assert guess.get("/api/v1/namespaces/default/configmaps").status_code == 401
    with client(data_dir, url, token=soon.token) as brief:
        assert brief.get("/api").status_code == 200
        wait_for(lambda: brief.get("/api").status_code == 401, 30)     # expiry (plus the 10 s cache)


class _Echo:
    """An ASGI app answering the authenticated user's name and groups (or the 401)."""

    def __init__(self):
        self.authenticator = RequestAuthenticator()

    async def __call__(self, scope, receive, send):
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from pkube.apiserver import errors
        if scope["type"] != "http":
            return
        try:
            user = await self.authenticator(Request(scope, receive))
            response = JSONResponse({"name": user.name, "groups": list(user.groups)})
        except errors.ApiError as err:
            response = JSONResponse({"code": err.code}, err.code)
        await response(scope, receive, send)


def test_the_tls_protocols_put_the_verified_certificate_into_the_scope(pki):
    data_dir, _, _ = pki
    p, port = certs.pki_dir(data_dir), free_port()
    config = uvicorn.Config(_Echo(), host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                            ssl_certfile=str(p / "apiserver.crt"), ssl_keyfile=str(p / "apiserver.key"),
                            ssl_ca_certs=str(p / "ca.crt"), ssl_cert_reqs=ssl.CERT_OPTIONAL,
                            http=TLSHttpProtocol, ws=TLSWebSocketProtocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10)
        url = f"https://127.0.0.1:{port}"
        with client(data_dir, url, cert="kubelet-client") as node:
            assert node.get("/").json() == {"name": "system:node:node-a",
                                            "groups": ["system:nodes", "system:authenticated"]}
            assert node.get("/").json()["name"] == "system:node:node-a"     # same connection
        with client(data_dir, url, cert="scheduler") as scheduler:
            assert scheduler.get("/").json()["name"] == "system:kube-scheduler"
        with client(data_dir, url) as anonymous:
            assert anonymous.get("/").status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)


WHOAMI = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
AS_BOB = {"X-Remote-User": "bob", "X-Remote-Group": "devs", "X-Remote-Extra-Team": "blue"}


def whoami(http: httpx.Client, headers: dict) -> httpx.Response:
    return http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json=WHOAMI, headers=headers)


def test_the_front_proxy_client_certificate_makes_the_headers_name_the_user(secured):
    url, data_dir, _ = secured
    with client(data_dir, url, cert="front-proxy-client") as proxy:
        answer = whoami(proxy, AS_BOB)
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"]["userInfo"] == {"username": "bob", "groups": ["devs", "system:authenticated"],
                                                       "extra": {"team": ["blue"]}}
        assert whoami(proxy, {}).status_code == 401          # a proxy naming nobody is nobody


def test_a_front_proxy_certificate_with_another_cn_or_the_admins_with_headers_do_not_impersonate(secured):
    url, data_dir, _ = secured
    p = certs.pki_dir(data_dir)
    front_proxy = cluster_pki.CertificateAuthority.load(p, cluster_pki.FRONT_PROXY_CA)
    front_proxy.issue(cluster_pki.CertSpec("intruder", "intruder", ("system:masters",)))
    with client(data_dir, url, cert="intruder") as intruder:
        assert whoami(intruder, AS_BOB).status_code == 401
        assert intruder.get("/api/v1/pods").status_code == 401    # nor is it a user of its own
    with client(data_dir, url, cert="admin") as admin:
        assert whoami(admin, AS_BOB).json()["status"]["userInfo"]["username"] == "kubernetes-admin"
