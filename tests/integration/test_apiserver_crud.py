"""Each verb of the apiserver against a real etcd: create, get, list, update, patch,
status, binding, scale, and the metadata and defaults the server fills in."""

from __future__ import annotations

import re

import pytest

PODS = "/api/v1/namespaces/default/pods"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def pod(name: str = "web", labels: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec}}


def deployment(name: str = "web", replicas: int = 2) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}}


@pytest.fixture
def apiserver(reused_apiserver):
    """This module's tests share one server (see tests/integration/conftest.py)."""
    return reused_apiserver


def test_create_then_get_returns_server_metadata(http):
    created = http.post(PODS, json=pod())
    assert created.status_code == 201
    body = created.json()
    md = body["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", md["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md["creationTimestamp"])
    assert md["generation"] == 1 and md["namespace"] == "default"
    assert int(md["resourceVersion"]) > 0
    got = http.get(f"{PODS}/web")
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert got.json() == body


def test_pod_and_deployment_defaults(http):
    spec = http.post(PODS, json=pod()).json()["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["schedulerName"] == "default-scheduler"
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    dep = http.post(DEPLOYMENTS, json=deployment()).json()["spec"]
    assert dep["strategy"] == {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert dep["revisionHistoryLimit"] == 10 and dep["progressDeadlineSeconds"] == 600


def test_secret_string_data_is_folded_into_base64_data(http):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}}
    body = http.post("/api/v1/namespaces/default/secrets", json=secret).json()
    assert body["data"] == {"pw": "aHVudGVyMg=="} and "stringData" not in body
    assert body["type"] == "Opaque"


def test_pod_status_is_reset_on_create(http):
    body = http.post(PODS, json={**pod(), "status": {"phase": "Running"}}).json()
    assert body["status"]["phase"] == "Pending"


def test_generate_name_gets_a_random_suffix(http):
    names = {http.post(PODS, json={**pod(), "metadata": {"generateName": "gen-"}}).json()["metadata"]["name"]
             for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"gen-[a-z0-9]{5}", n) for n in names)


def test_list_is_a_typed_list_with_the_store_revision(http):
    for i in range(3):
        http.post(PODS, json=pod(f"p{i}"))
    listed = http.get(PODS).json()
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p0", "p1", "p2"]
    newest = max(int(p["metadata"]["resourceVersion"]) for p in listed["items"])
    assert int(listed["metadata"]["resourceVersion"]) >= newest


def test_all_namespaces_list_and_cluster_scoped_list(http):
    http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    http.post(PODS, json=pod("a"))
    http.post("/api/v1/namespaces/other/pods", json=pod("b"))
    every = http.get("/api/v1/pods").json()["items"]
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in every} == {("default", "a"), ("other", "b")}
    namespaces = {n["metadata"]["name"] for n in http.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease", "other"} <= namespaces


def test_paging_with_limit_and_continue(http):
    for i in range(5):
        http.post(PODS, json=pod(f"p{i}"))
    first = http.get(PODS, params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["metadata"]["remainingItemCount"] == 3
    names = [p["metadata"]["name"] for p in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = http.get(PODS, params={"limit": 2, "continue": token}).json()
        names += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"p{i}" for i in range(5)]


def test_list_at_an_exact_resource_version(http):
    rv = http.post(PODS, json=pod("a")).json()["metadata"]["resourceVersion"]
    http.post(PODS, json=pod("b"))
    old = http.get(PODS, params={"resourceVersion": rv, "resourceVersionMatch": "Exact"}).json()
    assert [p["metadata"]["name"] for p in old["items"]] == ["a"]
    assert old["metadata"]["resourceVersion"] == rv
    newer = http.get(PODS, params={"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan"}).json()
    assert len(newer["items"]) == 2


def test_put_with_stale_resource_version_is_a_conflict(http):
    created = http.post(PODS, json=pod()).json()
    fresh = {**created, "metadata": {**created["metadata"], "labels": {"app": "web", "v": "2"}}}
    assert http.put(f"{PODS}/web", json=fresh).status_code == 200
    stale = http.put(f"{PODS}/web", json=created)
    assert stale.status_code == 409
    status = stale.json()
    assert status["reason"] == "Conflict"
    assert status["message"] == ('Operation cannot be fulfilled on pods "web": the object has been modified; '
                                 'please apply your changes to the latest version and try again')


def test_put_without_resource_version_is_unconditional(http):
    created = http.post(PODS, json=pod()).json()
    del created["metadata"]["resourceVersion"]
    created["metadata"]["labels"] = {"app": "other"}
    updated = http.put(f"{PODS}/web", json=created)
    assert updated.status_code == 200 and updated.json()["metadata"]["labels"] == {"app": "other"}


def test_generation_moves_only_with_spec(http):
    created = http.post(DEPLOYMENTS, json=deployment()).json()
    labelled = http.patch(f"{DEPLOYMENTS}/web", json={"metadata": {"labels": {"x": "y"}}},
                          headers={"content-type": "application/merge-patch+json"}).json()
    assert labelled["metadata"]["generation"] == 1
    scaled = http.patch(f"{DEPLOYMENTS}/web", json={"spec": {"replicas": 5}},
                        headers={"content-type": "application/merge-patch+json"}).json()
    assert scaled["metadata"]["generation"] == 2
    status = http.patch(f"{DEPLOYMENTS}/web/status", json={"status": {"replicas": 5}},
                        headers={"content-type": "application/merge-patch+json"}).json()
    assert status["metadata"]["generation"] == 2 and status["status"]["replicas"] == 5
    assert status["metadata"]["uid"] == created["metadata"]["uid"]


def test_main_resource_writes_do_not_change_status_and_status_writes_not_spec(http):
    http.post(DEPLOYMENTS, json=deployment())
    http.patch(f"{DEPLOYMENTS}/web/status", json={"status": {"replicas": 3}},
               headers={"content-type": "application/merge-patch+json"})
    via_main = http.patch(f"{DEPLOYMENTS}/web", json={"status": {"replicas": 9}, "spec": {"replicas": 4}},
                          headers={"content-type": "application/merge-patch+json"}).json()
    assert via_main["status"]["replicas"] == 3 and via_main["spec"]["replicas"] == 4
    via_status = http.patch(f"{DEPLOYMENTS}/web/status", json={"spec": {"replicas": 7}},
                            headers={"content-type": "application/merge-patch+json"}).json()
    assert via_status["spec"]["replicas"] == 4


def test_three_patch_types(http):
    http.post(PODS, json=pod())
    merged = http.patch(f"{PODS}/web", json={"metadata": {"labels": {"tier": "db"}}},
                        headers={"content-type": "application/merge-patch+json"}).json()
    assert merged["metadata"]["labels"] == {"app": "web", "tier": "db"}
    patched = http.patch(f"{PODS}/web", json=[{"op": "remove", "path": "/metadata/labels/tier"}],
                         headers={"content-type": "application/json-patch+json"}).json()
    assert patched["metadata"]["labels"] == {"app": "web"}
    two = pod("two")
    two["spec"]["containers"].append({"name": "side", "image": "busybox:1.36"})
    http.post(PODS, json=two)
    strategic = http.patch(f"{PODS}/two", json={"spec": {"containers": [{"name": "side", "image": "busybox:1.37"}]}},
                           headers={"content-type": "application/strategic-merge-patch+json"}).json()
    assert [(c["name"], c["image"]) for c in strategic["spec"]["containers"]] == [
        ("main", "busybox:1.36"), ("side", "busybox:1.37")]


def test_binding_sets_node_name_once(http):
    http.post(PODS, json=pod())
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    first = http.post(f"{PODS}/web/binding", json=binding)
    assert first.status_code == 201 and first.json()["status"] == "Success"
    got = http.get(f"{PODS}/web").json()
    assert got["spec"]["nodeName"] == "node-1"
    assert {"type": "PodScheduled", "status": "True"}.items() <= got["status"]["conditions"][0].items()
    again = http.post(f"{PODS}/web/binding", json={**binding, "target": {"kind": "Node", "name": "node-2"}})
    assert again.status_code == 409
    assert http.get(f"{PODS}/web").json()["spec"]["nodeName"] == "node-1"


def test_scale_subresource(http):
    http.post(DEPLOYMENTS, json=deployment(replicas=2))
    scale = http.get(f"{DEPLOYMENTS}/web/scale").json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 6
    assert http.put(f"{DEPLOYMENTS}/web/scale", json=scale).json()["spec"]["replicas"] == 6
    patched = http.patch(f"{DEPLOYMENTS}/web/scale", json={"spec": {"replicas": 1}},
                         headers={"content-type": "application/merge-patch+json"})
    assert patched.json()["spec"]["replicas"] == 1
    assert http.get(f"{DEPLOYMENTS}/web").json()["spec"]["replicas"] == 1
    rs = {**deployment("rs"), "apiVersion": "apps/v1", "kind": "ReplicaSet"}
    made = http.post("/apis/apps/v1/namespaces/default/replicasets", json=rs)
    assert made.status_code == 201, made.text
    rs_scale = http.get("/apis/apps/v1/namespaces/default/replicasets/rs/scale").json()
    assert rs_scale["spec"]["replicas"] == 2, rs_scale


def test_node_status_subresource_and_cluster_scope(http):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "2"}}}
    created = http.post("/api/v1/nodes", json=node)
    assert created.status_code == 201 and "namespace" not in created.json()["metadata"]
    assert created.json()["status"]["capacity"] == {"cpu": "2"}
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    http.patch("/api/v1/nodes/n1/status", json={"status": ready},
               headers={"content-type": "application/merge-patch+json"})
    assert http.get("/api/v1/nodes/n1").json()["status"]["conditions"][0]["type"] == "Ready"


@pytest.mark.parametrize("path,obj", [
    ("/api/v1/namespaces/default/configmaps", {"kind": "ConfigMap", "apiVersion": "v1", "data": {"a": "b"}}),
    ("/api/v1/namespaces/default/endpoints", {"kind": "Endpoints", "apiVersion": "v1", "subsets": []}),
    ("/api/v1/namespaces/default/events", {"kind": "Event", "apiVersion": "v1",
                                           "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"},
                                           "reason": "Test", "message": "m", "type": "Normal"}),
    ("/api/v1/namespaces/default/serviceaccounts", {"kind": "ServiceAccount", "apiVersion": "v1"}),
    ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
     {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4", "endpoints": []}),
    ("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
     {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "spec": {"holderIdentity": "n1"}}),
])
def test_every_other_kind_round_trips(http, path, obj):
    body = {**obj, "metadata": {"name": "thing"}}
    created = http.post(path, json=body)
    assert created.status_code == 201, created.text
    assert http.get(f"{path}/thing").json()["metadata"]["uid"] == created.json()["metadata"]["uid"]
    assert [o["metadata"]["name"] for o in http.get(path).json()["items"]] == ["thing"]
    assert http.delete(f"{path}/thing").status_code == 200
    assert http.get(f"{path}/thing").status_code == 404


def test_dry_run_writes_nothing(http):
    resp = http.post(PODS, params={"dryRun": "All"}, json=pod())
    assert resp.status_code == 201 and resp.json()["metadata"]["name"] == "web"
    assert http.get(f"{PODS}/web").status_code == 404
