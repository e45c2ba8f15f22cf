"""The client over TLS: CA verification, client certificates and insecure mode, from a kubeconfig,
against the real apiserver served by uvicorn with a CA-signed certificate that requires client certs."""

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
import threading
import time

import pytest
import uvicorn
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pkube.apiserver.app import create_app
from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.client.aio import AsyncApiClient
from pkube.client.errors import Unavailable
from pkube.client.kubeconfig import load_kubeconfig
from pkube.client.resources import NAMESPACES
from pkube.client.rest import ApiClient
from pkube.cluster.etcd import free_port


def make_cert(common_name, issuer=None, ca=False, ip=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return cert, key


def pem(cert=None, key=None) -> bytes:
    if cert is not None:
        return cert.public_bytes(serialization.Encoding.PEM)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def tls_apiserver(etcd, tmp_path):
    """An apiserver on https://127.0.0.1:PORT requiring a client certificate; yields (url, pki)."""
    ca = make_cert("pkube-test-ca", ca=True)
    server = make_cert("apiserver", issuer=ca, ip="127.0.0.1")
    client = make_cert("admin", issuer=ca)
    for name, data in (("ca.crt", pem(ca[0])), ("server.crt", pem(server[0])), ("server.key", pem(key=server[1]))):
        (tmp_path / name).write_bytes(data)
    port = free_port()
    state = {}

    async def serve():
        state["loop"] = asyncio.get_running_loop()
        storage = await EtcdStorage.connect("127.0.0.1", etcd.client_port)
        config = uvicorn.Config(create_app(storage, close_storage=True), host="127.0.0.1", port=port,
                                log_level="warning", ssl_certfile=str(tmp_path / "server.crt"),
                                ssl_keyfile=str(tmp_path / "server.key"), ssl_ca_certs=str(tmp_path / "ca.crt"),
                                ssl_cert_reqs=ssl.CERT_REQUIRED, timeout_graceful_shutdown=1)
        state["server"] = uvicorn.Server(config)
        await state["server"].serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not getattr(state.get("server"), "started", False):
            assert time.monotonic() < deadline and thread.is_alive(), "TLS apiserver did not start"
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", {"ca": pem(ca[0]), "cert": pem(client[0]), "key": pem(key=client[1])}
    finally:
        if "server" in state:
            state["server"].should_exit = True
        thread.join(15)


def kubeconfig(path, url, cluster=None, user=None):
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url, **{k: b64(v) if isinstance(v, bytes) else v
                                                                   for k, v in (cluster or {}).items()}}}],
        "users": [{"name": "t", "user": {k: b64(v) for k, v in (user or {}).items()}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return load_kubeconfig(str(path))


def namespace_names(config, flavor):
    """The namespaces listed through the blocking or the asyncio client."""
    if flavor == "sync":
        with ApiClient(config) as api:
            return [n["metadata"]["name"] for n in api.list(NAMESPACES)["items"]]

    async def main():
        async with AsyncApiClient(config) as api:
            return [n["metadata"]["name"] for n in (await api.list(NAMESPACES))["items"]]
    return asyncio.run(main())


FLAVORS = pytest.mark.parametrize("flavor", ["sync", "async"])


@FLAVORS
def test_ca_and_client_certificate_from_kubeconfig(tls_apiserver, tmp_path, flavor):
    url, pki = tls_apiserver
    config = kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": pki["ca"]},
                        {"client-certificate-data": pki["cert"], "client-key-data": pki["key"]})
    assert "default" in namespace_names(config, flavor)


def test_async_watch_over_tls(tls_apiserver, tmp_path):
    url, pki = tls_apiserver
    config = kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": pki["ca"]},
                        {"client-certificate-data": pki["cert"], "client-key-data": pki["key"]})

    async def main():
        async with AsyncApiClient(config) as api:
            async for kind, obj in api.watch(NAMESPACES, resource_version="0", allow_bookmarks=False):
                if obj["metadata"]["name"] == "default":
                    return kind
    assert asyncio.run(asyncio.wait_for(main(), 20)) == "ADDED"


@FLAVORS
def test_unknown_server_certificate_is_refused(tls_apiserver, tmp_path, flavor):
    url, pki = tls_apiserver
    config = kubeconfig(tmp_path / "kc", url, {},
                        {"client-certificate-data": pki["cert"], "client-key-data": pki["key"]})
    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        namespace_names(config, flavor)


@FLAVORS
def test_insecure_skip_verify_still_presents_the_client_certificate(tls_apiserver, tmp_path, flavor):
    url, pki = tls_apiserver
    config = kubeconfig(tmp_path / "kc", url, {"insecure-skip-tls-verify": True},
                        {"client-certificate-data": pki["cert"], "client-key-data": pki["key"]})
    assert "default" in namespace_names(config, flavor)


@FLAVORS
def test_missing_client_certificate_is_refused_by_the_server(tls_apiserver, tmp_path, flavor):
    url, pki = tls_apiserver
    config = kubeconfig(tmp_path / "kc", url, {"certificate-authority-data": pki["ca"]})
    with pytest.raises(Unavailable):
        namespace_names(config, flavor)
