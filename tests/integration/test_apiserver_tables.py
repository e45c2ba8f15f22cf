"""What the real kubectl needs: server-side Tables (list, get, watch), OpenAPI documents,
and kubectl itself applying and printing against the apiserver."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers.kubeconfig import write_kubeconfig

PODS = "/api/v1/namespaces/default/pods"
TABLE = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


@pytest.fixture
def apiserver(reused_apiserver):
    """This module's tests share one server (see tests/integration/conftest.py)."""
    return reused_apiserver


def test_list_as_table_has_kubectl_columns_and_row_metadata(http):
    http.post(PODS, json=pod("a"))
    table = http.get(PODS, headers=TABLE).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age"]
    row = table["rows"][0]
    assert row["cells"][:4] == ["a", "0/1", "Pending", "0"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["labels"] == {"app": "a"}
    assert int(table["metadata"]["resourceVersion"]) > 0


def test_get_as_table_and_include_object(http):
    http.post(PODS, json=pod("a"))
    table = http.get(f"{PODS}/a", headers=TABLE, params={"includeObject": "Object"}).json()
    assert table["rows"][0]["object"]["kind"] == "Pod"
    assert http.get(f"{PODS}/a", headers=TABLE, params={"includeObject": "Bogus"}).status_code == 400
    assert http.get(f"{PODS}/a").json()["kind"] == "Pod"


def test_watch_as_table_sends_table_events(apiserver, http):
    http.post(PODS, json=pod("a"))
    with apiserver.client(timeout=20) as client:
        with client.stream("GET", PODS, params={"watch": "1", "timeoutSeconds": "5"}, headers=TABLE) as resp:
            first = json.loads(next(line for line in resp.iter_lines() if line.strip()))
    assert first["type"] == "ADDED" and first["object"]["kind"] == "Table"
    assert first["object"]["rows"][0]["cells"][0] == "a"


def test_openapi_documents_with_etags(http):
    root = http.get("/openapi/v3").json()
    assert {"api/v1", "apis/apps/v1"} <= set(root["paths"])
    doc = http.get("/openapi/v3/apis/apps/v1")
    assert doc.status_code == 200 and "components" in doc.json()
    again = http.get("/openapi/v3/apis/apps/v1", headers={"if-none-match": doc.headers["etag"]})
    assert again.status_code == 304
    assert http.get("/openapi/v3/apis/nothing/v1").status_code == 404
    assert "definitions" in http.get("/openapi/v2").json()


@pytest.fixture
def kubectl(apiserver, tmp_path):
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed: the real-kubectl checks need it on PATH")
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "--kubeconfig", str(config), *args], capture_output=True,
                              text=True, timeout=60, input=stdin)
    return run


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def test_real_kubectl_apply_reapply_and_get(kubectl):
    created = kubectl("apply", "-f", "-", stdin=MANIFEST)
    assert created.returncode == 0, created.stderr
    assert "deployment.apps/web created" in created.stdout and "service/web created" in created.stdout
    edited = MANIFEST.replace("busybox:1.36", "busybox:1.37").replace(', {name: B, value: "2"}', "")
    reapplied = kubectl("apply", "-f", "-", stdin=edited)
    assert "deployment.apps/web configured" in reapplied.stdout and "service/web unchanged" in reapplied.stdout
    env = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}")
    assert env.stdout == "A"
    printed = kubectl("get", "deploy,svc")
    assert printed.returncode == 0, printed.stderr
    assert "NAME                  READY   UP-TO-DATE   AVAILABLE   AGE" in printed.stdout
    assert "TYPE        CLUSTER-IP" in printed.stdout
    scaled = kubectl("scale", "deploy", "web", "--replicas=3")
    assert scaled.returncode == 0 and kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    assert kubectl("delete", "svc", "web").returncode == 0
    assert "NotFound" in kubectl("get", "svc", "web").stderr


def test_real_kubectl_typed_creates_send_protobuf(kubectl):
    for args in (("create", "namespace", "team"), ("create", "configmap", "c1", "--from-literal=a=b"),
                 ("create", "secret", "generic", "s1", "--from-literal=pw=x"),
                 ("create", "deployment", "d1", "--image=busybox"), ("expose", "deploy", "d1", "--port=80")):
        done = kubectl(*args)
        assert done.returncode == 0, (args, done.stderr)
    secret = kubectl("get", "secret", "s1", "-o", "jsonpath={.data.pw}")
    assert secret.stdout == "eA=="
    assert kubectl("get", "svc", "d1", "-o", "jsonpath={.spec.ports[0].port}").stdout == "80"


def test_real_kubectl_drains_a_node_through_evictions(kubectl, apiserver):
    with apiserver.client() as http:
        http.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        for name in ("a", "b"):
            http.post("/api/v1/namespaces/default/pods", json={
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": "busybox"}]}})
        drained = kubectl("drain", "n1", "--force", "--timeout=20s")
        assert drained.returncode == 0, drained.stderr
        assert "evicted" in drained.stdout
        assert http.get("/api/v1/namespaces/default/pods").json()["items"] == []
        assert http.get("/api/v1/nodes/n1").json()["spec"]["unschedulable"] is True
