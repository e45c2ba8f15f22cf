"""CertificateSigningRequests on a real apiserver with the signer and approver controllers: a
node's CSR made with a bootstrap identity is approved and signed by the cluster CA as
system:node:<name>; the requester is the caller's, never the client's; other CSRs wait for
`kubectl certificate approve` (the real kubectl) or are denied; the approval and status
subresources keep to their fields; bad requests are 422."""

from __future__ import annotations

import asyncio
import base64
import datetime
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkube.apiserver import errors
from pkube.apiserver.auth.user import UserInfo
from pkube.client.aio import AsyncApiClient
from pkube.client.csr import CertificateRefused, csr_object, node_csr, request_node_certificate
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CERTIFICATESIGNINGREQUESTS
from pkube.controllers.manager import ControllerManager
from tests.integration.conftest import start_apiserver, stop_apiserver

USERS = {"bootstrap-token": UserInfo("system:bootstrap:abcdef", groups=("system:bootstrappers", "system:authenticated")),
         "node-2-token": UserInfo("system:node:node-2", groups=("system:nodes", "system:authenticated")),
         "alice-token": UserInfo("alice", "uid-alice", ("dev", "system:authenticated"))}
ADMIN = UserInfo("admin", groups=("system:masters", "system:authenticated"))
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


async def _authenticate(request):
    """Bearer tokens of USERS; no credentials: admin (kubectl sends none over plain HTTP)."""
    header = request.headers.get("authorization")
    if header is None:
        return ADMIN
    user = USERS.get(header.removeprefix("Bearer "))
    if user is None:
        raise errors.unauthorized()
    return user


@pytest.fixture(scope="module")
def cluster_ca(tmp_path_factory):
    """A CA (certificate and key files) the signer signs with."""
    directory = tmp_path_factory.mktemp("ca")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return directory, cert


@pytest.fixture
def api(etcd):
    thread, running = start_apiserver(etcd, authenticator=_authenticate)
    try:
        yield running
    finally:
        stop_apiserver(thread)


def _with_controllers(api, ca_dir: Path, scenario, timeout: float = 60):
    async def main():
        async with AsyncApiClient(ClientConfig(api.url)) as admin:
            manager = ControllerManager(admin, ["csrsigning", "csrapproving"],
                                        cluster_signing_cert_file=str(ca_dir / "ca.crt"),
                                        cluster_signing_key_file=str(ca_dir / "ca.key"))
            task = asyncio.ensure_future(manager.run())
            try:
                return await asyncio.wait_for(scenario(), timeout)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return asyncio.run(main())


def _as(api, token: str) -> AsyncApiClient:
    return AsyncApiClient(ClientConfig(api.url, token=token))


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    return (cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])


def test_a_bootstrap_token_gets_a_node_client_certificate_signed_by_the_cluster_ca(api, cluster_ca):
    ca_dir, ca_cert = cluster_ca

    async def scenario():
        async with _as(api, "bootstrap-token") as bootstrap:
            return await request_node_certificate(bootstrap, "node-1", timeout=30, poll=0.1)

    cert_pem, key_pem = _with_controllers(api, ca_dir, scenario)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert _subject(cert) == ("system:node:node-1", ["system:nodes"])
    cert.verify_directly_issued_by(ca_cert)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    with httpx.Client(base_url=api.url) as admin:
        csr = admin.get(CSR_PATH).json()["items"][0]
    assert csr["spec"]["username"] == "system:bootstrap:abcdef"
    approved = [c for c in csr["status"]["conditions"] if c["type"] == "Approved"]
    assert approved and approved[0]["reason"] == "AutoApproved"


def test_a_node_renewing_its_own_certificate_is_approved_but_not_another_nodes(api, cluster_ca):
    ca_dir, _ = cluster_ca

    async def scenario():
        async with _as(api, "node-2-token") as node:
            other = await node.create(CERTIFICATESIGNINGREQUESTS,
                                      csr_object(node_csr("node-3", ec.generate_private_key(ec.SECP256R1()))))
            cert_pem, _ = await request_node_certificate(node, "node-2", timeout=30, poll=0.1)
            return cert_pem, other["metadata"]["name"]

    cert_pem, other = _with_controllers(api, ca_dir, scenario)
    assert _subject(x509.load_pem_x509_certificate(cert_pem))[0] == "system:node:node-2"
    with httpx.Client(base_url=api.url) as admin:
        # node-2's request for node-3, made first (the one approver worker takes requests in
        # order), is left for a person: no condition once node-2's own was signed
        assert not (admin.get(f"{CSR_PATH}/{other}").json().get("status") or {}).get("conditions")


def _kubectl_binaries() -> list[str]:
    found = [shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")]
    return list(dict.fromkeys(b for b in found if b and Path(b).exists()))


@pytest.mark.parametrize("binary", _kubectl_binaries())
def test_kubectl_certificate_approve_and_deny(api, cluster_ca, tmp_path, binary):
    ca_dir, ca_cert = cluster_ca
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))

    def kubectl(*args):
        return subprocess.run([binary, "--kubeconfig", str(config), *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "alice")])).sign(key, hashes.SHA256())
    body = csr_object(request.public_bytes(serialization.Encoding.PEM), "kubernetes.io/kube-apiserver-client",
                      ["client auth"])
    body["metadata"] = {"name": "alice"}
    body["spec"]["username"] = "system:admin"            # ignored: the requester is the caller
    denied = {**body, "metadata": {"name": "mallory"}}

    async def scenario():
        async with _as(api, "alice-token") as alice:
            created = await alice.create(CERTIFICATESIGNINGREQUESTS, body)
            await alice.create(CERTIFICATESIGNINGREQUESTS, denied)
        assert created["spec"]["username"] == "alice" and created["spec"]["groups"] == list(USERS["alice-token"].groups)
        assert created["spec"]["uid"] == "uid-alice"
        approve = await asyncio.to_thread(kubectl, "certificate", "approve", "alice")
        assert approve.returncode == 0, approve.stderr
        assert "approved" in approve.stdout
        deny = await asyncio.to_thread(kubectl, "certificate", "deny", "mallory")
        assert deny.returncode == 0, deny.stderr
        async with AsyncApiClient(ClientConfig(api.url)) as admin:
            while not ((await admin.get(CERTIFICATESIGNINGREQUESTS, "alice")).get("status") or {}).get("certificate"):
                await asyncio.sleep(0.1)

    _with_controllers(api, ca_dir, scenario)
    with httpx.Client(base_url=api.url) as admin:
        signed = admin.get(f"{CSR_PATH}/alice").json()
        cert = x509.load_pem_x509_certificate(base64.b64decode(signed["status"]["certificate"]))
        assert _subject(cert) == ("alice", [])
        cert.verify_directly_issued_by(ca_cert)
        (tmp_path / "alice.crt").write_bytes(base64.b64decode(signed["status"]["certificate"]))
        (tmp_path / "alice.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
        ssl.create_default_context().load_cert_chain(tmp_path / "alice.crt", tmp_path / "alice.key")  # OpenSSL takes it
        mallory = admin.get(f"{CSR_PATH}/mallory").json()
        assert [c["type"] for c in mallory["status"]["conditions"]] == ["Denied"]
        assert "certificate" not in mallory["status"]
    listed = kubectl("get", "csr")
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert listed.stdout.split()[:6] == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert rows["alice"][2:] == ["kubernetes.io/kube-apiserver-client", "alice", "<none>", "Approved,Issued"]
    assert rows["mallory"][-1] == "Denied"
    again = kubectl("certificate", "approve", "mallory")         # denied stays denied
    assert again.returncode != 0 and 'certificate signing request "mallory" is already Denied' in again.stderr


def test_status_and_approval_subresources_keep_to_their_fields(api):
    key = ec.generate_private_key(ec.SECP256R1())
    body = csr_object(node_csr("n", key))
    body["metadata"] = {"name": "fields"}
    with httpx.Client(base_url=api.url) as admin:
        created = admin.post(CSR_PATH, json=body)
        assert created.status_code == 201, created.text
        csr = created.json()
        # a certificate sent to /approval is dropped; an Approved condition sent to /status is dropped
        csr["status"] = {"certificate": base64.b64encode(b"junk").decode(),
                         "conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "m"}]}
        approved = admin.put(f"{CSR_PATH}/fields/approval", json=csr)
        assert approved.status_code == 200, approved.text
        assert "certificate" not in approved.json()["status"]
        again = approved.json()
        again["status"] = {"conditions": []}
        removed = admin.put(f"{CSR_PATH}/fields/approval", json=again)
        assert removed.status_code == 422 and 'may not remove a condition of type "Approved"' in removed.json()["message"]
        both = approved.json()
        both["status"]["conditions"].append({"type": "Denied", "status": "True", "reason": "R", "message": "m"})
        refused = admin.put(f"{CSR_PATH}/fields/approval", json=both)
        assert refused.status_code == 422 and "mutually exclusive" in refused.json()["message"]
        status_write = approved.json()
        status_write["status"]["conditions"] = []
        kept = admin.put(f"{CSR_PATH}/fields/status", json=status_write)
        assert kept.status_code == 200, kept.text
        assert [c["type"] for c in kept.json()["status"]["conditions"]] == ["Approved"]


@pytest.mark.parametrize("change, field", [
    (lambda s: s.update(request=base64.b64encode(b"not a csr").decode()), "spec.request"),
    (lambda s: s.update(signerName="no-slash"), "spec.signerName"),
    (lambda s: s.update(usages=["client auth", "flying"]), "spec.usages[1]"),
    (lambda s: s.update(usages=[]), "spec.usages"),
    (lambda s: s.update(expirationSeconds=60), "spec.expirationSeconds"),
])
def test_bad_requests_are_invalid(api, change, field):
    body = csr_object(node_csr("n", ec.generate_private_key(ec.SECP256R1())))
    body["metadata"] = {"name": "bad"}
    change(body["spec"])
    with httpx.Client(base_url=api.url) as admin:
        r = admin.post(CSR_PATH, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == field


def test_refused_requests_raise(api, cluster_ca):
    ca_dir, _ = cluster_ca

    async def scenario():
        async with _as(api, "alice-token") as alice:
            task = asyncio.ensure_future(request_node_certificate(alice, "node-9", timeout=30, poll=0.1))
            async with AsyncApiClient(ClientConfig(api.url)) as admin:
                while not (await admin.list(CERTIFICATESIGNINGREQUESTS))["items"]:
                    await asyncio.sleep(0.05)
                csr = (await admin.list(CERTIFICATESIGNINGREQUESTS))["items"][0]
                csr["status"] = {"conditions": [{"type": "Denied", "status": "True", "reason": "No",
                                                 "message": "not you"}]}
                await admin.replace(CERTIFICATESIGNINGREQUESTS, csr, subresource="approval")
            with pytest.raises(CertificateRefused, match="denied: not you"):
                await task

    _with_controllers(api, ca_dir, scenario)
