"""An extension apiserver authenticates what pkube proxies to it, as one built on k8s.io/apiserver
does: against `python -m pkube.apiserver` run with pkube up's own security flags
(cluster.up.apiserver_security_flags: Node,RBAC, the front-proxy client certificate, the
--requestheader-* flags) over the PKI of cluster.certs, on the test's etcd.

The extension (a small HTTPS app written here, on loopback behind a Service + Endpoints + an
APIService) reads kube-system/extension-apiserver-authentication with its own client
certificate (CN wardle-apiserver, bound to the bootstrap Role
extension-apiserver-authentication-reader), then trusts requestheader-client-ca-file for client
certificates and believes X-Remote-* only from one whose CN is in requestheader-allowed-names.
The real kubectl reaches it through pkube as the admin."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pkube.apiserver.tlsscope import TLSHttpProtocol
from pkube.cluster import certs, pki, up
from pkube.cluster.etcd import free_port
from tests.helpers.waiting import wait_for
from tests.integration.test_aggregation import GROUP, SERVICE, VERSION, apiservice, self_signed, wait_available
from tests.integration.test_apiserver_authn import _ready
from tests.integration.test_crds import kubectl_binaries

CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
EXTENSION_USER = "wardle-apiserver"
FLUNDERS = f"/apis/{GROUP}/{VERSION}/namespaces/default/flunders"


@contextlib.contextmanager
def apiserver(etcd, data_dir, port: int):
    """`python -m pkube.apiserver` with pkube up's security flags for `data_dir`'s PKI, until ready."""
    p = certs.pki_dir(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "pkube.apiserver", "--etcd-servers", etcd.endpoint,
                             "--port", str(port), *up.apiserver_security_flags(p), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _ready(url, p / "ca.crt"), 30)
        assert proc.poll() is None, proc.stderr.read().decode()
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def cluster(etcd, tmp_path):
    """(url, data dir) of an apiserver run with pkube up's security flags."""
    data_dir, port = tmp_path / "cluster", free_port()
    certs.prepare(data_dir, f"https://127.0.0.1:{port}", "node-a")
    with apiserver(etcd, data_dir, port) as url:
        yield url, data_dir


def client(url: str, data_dir, cert: str) -> httpx.Client:
    """A client of the cluster presenting the certificate `cert` of its pki directory."""
    p = certs.pki_dir(data_dir)
    context = ssl.create_default_context(cafile=str(p / "ca.crt"))
    context.load_cert_chain(p / f"{cert}.crt", p / f"{cert}.key")
    return httpx.Client(base_url=url, verify=context, timeout=10)


def extension_app(allowed_names: list[str]) -> Starlette:
    """Discovery and a flunders list naming the user the front proxy said; 401 for a caller
    without a front-proxy certificate whose CN is allowed (k8s.io/apiserver's delegated
    authentication: the certificate was verified against the requestheader CA at the handshake)."""
    def proxy_user(request: Request):
        peer = (request.scope.get("extensions") or {}).get("tls", {}).get("client_cert")
        names = [value for rdn in (peer or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
        if not names or (allowed_names and names[0] not in allowed_names):
            return None
        return {"user": request.headers.get("x-remote-user", ""), "groups": request.headers.getlist("x-remote-group")}

    def unauthorized():
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, status_code=401)

    async def discovery(request: Request):
        if proxy_user(request) is None:
            return unauthorized()
        return JSONResponse({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                             "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": True,
                                            "kind": "Flunder", "verbs": ["list"]}]})

    async def flunders(request: Request):
        seen = proxy_user(request)
        if seen is None:
            return unauthorized()
        return JSONResponse({"kind": "FlunderList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {},
                             "items": [], "seen": seen})

    return Starlette(routes=[Route(f"/apis/{GROUP}/{VERSION}", discovery), Route(FLUNDERS, flunders)])


@pytest.fixture
def wardle(cluster, tmp_path):
    """The extension apiserver, configured from the ConfigMap it reads with its own identity;
    yields (port, its serving certificate's PEM, the ConfigMap's data)."""
    url, data_dir = cluster
    p = certs.pki_dir(data_dir)
    pki.CertificateAuthority.load(p).issue(pki.CertSpec("wardle", EXTENSION_USER))
    with client(url, data_dir, "admin") as admin:
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "wardle:auth-reader", "namespace": "kube-system"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "extension-apiserver-authentication-reader"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": EXTENSION_USER}]}
        assert admin.post("/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings",
                          json=binding).status_code == 201
    with client(url, data_dir, "wardle") as own:
        data = wait_for(lambda: own.get(CONFIGMAP).json().get("data") if own.get(CONFIGMAP).status_code == 200 else None)
        assert own.get("/api/v1/namespaces/kube-system/configmaps/kube-proxy").status_code == 403
    (tmp_path / "requestheader-ca.crt").write_text(data["requestheader-client-ca-file"])
    cert, key, pem = self_signed(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(extension_app(json.loads(data["requestheader-allowed-names"])),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           ssl_certfile=cert, ssl_keyfile=key, http=TLSHttpProtocol,
                                           ssl_ca_certs=str(tmp_path / "requestheader-ca.crt"),
                                           ssl_cert_reqs=ssl.CERT_OPTIONAL))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    try:
        yield port, pem, data
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_configmap_tells_extensions_the_front_proxy_ca_and_headers(cluster, wardle):
    _, data_dir = cluster
    _, _, data = wardle
    p = certs.pki_dir(data_dir)
    assert data["client-ca-file"] == (p / "ca.crt").read_text()
    assert data["requestheader-client-ca-file"] == (p / "front-proxy-ca.crt").read_text()
    assert {k: json.loads(v) for k, v in data.items() if not k.endswith("-file")} == {
        "requestheader-allowed-names": ["front-proxy-client"], "requestheader-username-headers": ["X-Remote-User"],
        "requestheader-uid-headers": [], "requestheader-group-headers": ["X-Remote-Group"],
        "requestheader-extra-headers-prefix": ["X-Remote-Extra-"]}


def register(url: str, data_dir, port: int, pem: bytes) -> None:
    """Service + Endpoints to 127.0.0.1:port and the APIService, as the admin; until Available."""
    with client(url, data_dir, "admin") as admin:
        assert admin.post("/api/v1/namespaces/default/services", json=SERVICE).status_code == 201
        endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "wardle", "namespace": "default"},
                     "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}
        assert admin.post("/api/v1/namespaces/default/endpoints", json=endpoints).status_code == 201
        assert admin.post("/apis/apiregistration.k8s.io/v1/apiservices", json=apiservice(pem)).status_code == 201
        wait_available(admin, f"{VERSION}.{GROUP}", "True", "Passed")


@pytest.mark.parametrize("binary", kubectl_binaries() or [None])
def test_kubectl_reaches_the_extension_as_the_admin_and_the_extension_refuses_direct_callers(
        binary, cluster, wardle, tmp_path):
    assert binary is not None, "kubectl is not installed: the real-kubectl checks need it on PATH"
    url, data_dir = cluster
    port, pem, _ = wardle
    register(url, data_dir, port, pem)
    got = subprocess.run([binary, "--kubeconfig", str(data_dir / "admin.kubeconfig"), "--cache-dir",
                          str(tmp_path / "cache"), "get", "--raw", FLUNDERS], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["seen"] == {"user": "kubernetes-admin",
                                              "groups": ["system:masters", "system:authenticated"]}
    direct = ssl.create_default_context(cadata=pem.decode())
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=direct, timeout=10) as anonymous:
        refused = anonymous.get(FLUNDERS, headers={"X-Remote-User": "kubernetes-admin", "X-Remote-Group": "system:masters"})
        assert refused.status_code == 401 and refused.json()["reason"] == "Unauthorized"
    p = certs.pki_dir(data_dir)
    direct.load_cert_chain(p / "admin.crt", p / "admin.key")        # a cluster certificate is not the proxy's
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=direct, timeout=10) as impostor:
        with pytest.raises(httpx.HTTPError):
            impostor.get(FLUNDERS, headers={"X-Remote-User": "kubernetes-admin"})


def test_a_second_apiserver_with_the_same_flags_leaves_the_configmap_as_it_is(etcd, cluster):
    url, data_dir = cluster
    with client(url, data_dir, "admin") as admin:
        before = wait_for(lambda: admin.get(CONFIGMAP).json() if admin.get(CONFIGMAP).status_code == 200 else None)
        with apiserver(etcd, data_dir, free_port()):         # ready: it has synced the ConfigMap at start
            after = admin.get(CONFIGMAP).json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]
