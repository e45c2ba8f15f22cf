"""Data protection on a `pkube up` cluster: Secrets are ciphertext in etcd (read with the real
etcdctl), `pkube secrets rotate-key` moves every Secret to a new key (also when resumed after
an interruption) and they stay readable, the audit log records writes with their user and
never a Secret's value, and Pod Security Admission refuses a privileged pod in a namespace
labelled enforce=baseline, through the real kubectl."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
import yaml

from tests.e2e.conftest import pkube
from tests.helpers.waiting import wait_for

ETCDCTL = shutil.which("etcdctl")
KUBECTL = shutil.which("kubectl")
VALUE = "correct-horse-battery-staple"


def etcdctl(cluster, *args: str) -> str:
    port = (cluster.data_dir / "etcd.ports").read_text().split()[0]
    done = subprocess.run([ETCDCTL, "--endpoints", f"http://127.0.0.1:{port}", *args],
                          capture_output=True, timeout=30, env={"ETCDCTL_API": "3"})
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("latin-1")


def stored(cluster, namespace: str, name: str) -> str:
    """The value etcd holds for a Secret, as `etcdctl get --print-value-only` prints it."""
    return etcdctl(cluster, "get", f"/registry/secrets/{namespace}/{name}", "--print-value-only")


def make_secret(http, name: str, value: str = VALUE) -> None:
    made = http.post("/api/v1/namespaces/default/secrets", json={
        "metadata": {"name": name}, "stringData": {"password": value}})
    assert made.status_code == 201, made.text


def encryption_keys(cluster) -> list[str]:
    doc = yaml.safe_load((cluster.data_dir / "apiserver" / "encryption-config.yaml").read_text())
    return [k["name"] for k in doc["resources"][0]["providers"][0]["aesgcm"]["keys"]]


pytestmark = pytest.mark.skipif(ETCDCTL is None, reason="etcdctl is not installed (etcd-client; make setup)")


def test_a_secret_is_ciphertext_in_etcd(cluster):
    with cluster.http() as http:
        make_secret(http, "at-rest")
        assert base64.b64decode(http.get("/api/v1/namespaces/default/secrets/at-rest").json()["data"]["password"]) \
            == VALUE.encode()
    raw = stored(cluster, "default", "at-rest")
    assert raw.startswith("k8s:enc:aesgcm:v1:key")
    assert VALUE not in raw and base64.b64encode(VALUE.encode()).decode() not in raw
    config = cluster.data_dir / "apiserver" / "encryption-config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600


def test_rotate_key_moves_every_secret_to_a_new_key_and_they_stay_readable(cluster):
    with cluster.http() as http:
        for i in range(3):
            make_secret(http, f"rotated-{i}", f"{VALUE}-{i}")
        before = encryption_keys(cluster)
        done = pkube("secrets", "rotate-key", "--data-dir", str(cluster.data_dir))
        assert done.returncode == 0, done.stderr
        after = encryption_keys(cluster)
        assert len(after) == 1 and after[0] not in before
        total = len(etcdctl(cluster, "get", "/registry/secrets/", "--prefix", "--keys-only").split())
        assert done.stdout.strip() == f"{total} secrets re-encrypted with {after[0]}"
        for i in range(3):
            assert stored(cluster, "default", f"rotated-{i}").startswith(f"k8s:enc:aesgcm:v1:{after[0]}:")
            data = http.get(f"/api/v1/namespaces/default/secrets/rotated-{i}").json()["data"]
            assert base64.b64decode(data["password"]).decode() == f"{VALUE}-{i}"


def test_rotate_key_resumes_a_rotation_interrupted_after_its_first_step(cluster):
    from pkube.cluster.secrets import encryption_config_path, new_key, write_config
    with cluster.http() as http:
        make_secret(http, "resumed")
        path = encryption_config_path(cluster.data_dir)
        doc = yaml.safe_load(path.read_text())
        doc["resources"][0]["providers"][0]["aesgcm"]["keys"].insert(0, new_key("key90"))
        write_config(path, doc)        # what the first step writes before an interruption
        done = pkube("secrets", "rotate-key", "--data-dir", str(cluster.data_dir))
        assert done.returncode == 0, done.stderr
        assert "resuming the rotation to key key90" in done.stderr
        assert encryption_keys(cluster) == ["key90"]
        assert stored(cluster, "default", "resumed").startswith("k8s:enc:aesgcm:v1:key90:")
        assert http.get("/api/v1/namespaces/default/secrets/resumed").status_code == 200


def test_the_audit_log_records_a_create_with_its_user_and_no_secret_value(cluster):
    with cluster.http() as http:
        made = http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "audited"}})
        assert made.status_code == 201
        make_secret(http, "audited-secret")
    log = cluster.data_dir / "apiserver" / "audit.log"

    def create_events():
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [e for e in events if e["verb"] == "create" and e.get("objectRef", {}).get("name")
                in ("audited", "audited-secret")]
    events = wait_for(lambda: len(create_events()) == 2 and create_events())
    for event in events:
        assert event["stage"] == "ResponseComplete" and event["responseStatus"]["code"] == 201
        assert event["user"]["username"] and not event["user"]["username"].startswith("system:anonymous")
    assert {e["objectRef"]["resource"]: e["level"] for e in events} == {"configmaps": "Metadata",
                                                                       "secrets": "Metadata"}
    for path in [log, *(cluster.data_dir / "logs").glob("*.log")]:
        assert VALUE not in path.read_text(errors="replace"), path


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_pod_security_enforce_refuses_a_privileged_pod_through_kubectl(cluster, tmp_path):
    def kubectl(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60)
    assert kubectl("create", "namespace", "psa-e2e").returncode == 0
    assert kubectl("label", "namespace", "psa-e2e", "pod-security.kubernetes.io/enforce=baseline").returncode == 0
    pod = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "psa-e2e"},
                          "spec": {"containers": [{"name": "c", "image": "busybox",
                                                   "securityContext": {"privileged": True}}]}})
    refused = wait_for(lambda: (r := kubectl("apply", "-f", "-", stdin=pod)).returncode != 0 and r)
    assert ('pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged '
            '(container "c" must not set securityContext.privileged=true)') in refused.stderr
