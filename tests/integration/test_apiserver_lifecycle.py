"""Deletion (grace periods, finalizers, propagation), namespaces, service IP and node
port allocation, and every label-selector operator."""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

PODS = "/api/v1/namespaces/default/pods"
SERVICES = "/api/v1/namespaces/default/services"
MERGE = {"content-type": "application/merge-patch+json"}


def pod(name: str, labels: dict | None = None, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}, **meta},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def service(name: str, type_: str = "ClusterIP", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": name}, "ports": [{"port": 80}], **spec}}


@pytest.fixture
def apiserver(reused_apiserver):
    """This module's tests share one server (see tests/integration/conftest.py)."""
    return reused_apiserver


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ---- deletion

def test_unbound_pod_goes_at_once(http):
    http.post(PODS, json=pod("a"))
    resp = http.delete(f"{PODS}/a")
    assert resp.status_code == 200 and resp.json()["metadata"]["name"] == "a"
    assert http.get(f"{PODS}/a").status_code == 404


def test_bound_pod_waits_for_its_kubelet(http):
    http.post(PODS, json={**pod("a"), "spec": {**pod("a")["spec"], "nodeName": "n1",
                                                "terminationGracePeriodSeconds": 20}})
    deleting = http.delete(f"{PODS}/a").json()
    assert deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 20
    assert http.get(f"{PODS}/a").json()["metadata"]["deletionGracePeriodSeconds"] == 20
    shorter = http.delete(f"{PODS}/a", params={"gracePeriodSeconds": 5}).json()
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    assert http.delete(f"{PODS}/a", params={"gracePeriodSeconds": 0}).status_code == 200
    assert http.get(f"{PODS}/a").status_code == 404


def test_finalizers_hold_the_object_until_emptied(http):
    http.post("/api/v1/namespaces/default/configmaps",
              json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x/y"]}})
    path = "/api/v1/namespaces/default/configmaps/c"
    held = http.delete(path)
    assert held.status_code == 200 and held.json()["metadata"]["deletionTimestamp"]
    assert http.get(path).status_code == 200
    adding = http.patch(path, json={"metadata": {"finalizers": ["x/y", "x/z"]}}, headers=MERGE)
    assert adding.status_code == 422
    assert http.patch(path, json={"metadata": {"finalizers": None}}, headers=MERGE).status_code == 200
    assert http.get(path).status_code == 404


def test_propagation_policy_becomes_a_finalizer(http):
    deps = "/apis/apps/v1/namespaces/default/replicasets"
    labels = {"app": "x"}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
          "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    http.post(deps, json=rs)
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
    held = http.request("DELETE", f"{deps}/r", json=body).json()
    assert held["metadata"]["finalizers"] == ["foregroundDeletion"]
    http.post(deps, json={**rs, "metadata": {"name": "o"}})
    orphaned = http.delete(f"{deps}/o", params={"propagationPolicy": "Orphan"}).json()
    assert orphaned["metadata"]["finalizers"] == ["orphan"]
    http.post(deps, json={**rs, "metadata": {"name": "b"}})
    http.delete(f"{deps}/b", params={"propagationPolicy": "Background"})
    assert http.get(f"{deps}/b").status_code == 404


def test_delete_collection_with_selectors(http):
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        http.post(PODS, json=pod(name, {"app": app}))
    deleted = http.delete(PODS, params={"labelSelector": "app=x"}).json()
    assert deleted["kind"] == "PodList" and len(deleted["items"]) == 2
    assert [p["metadata"]["name"] for p in http.get(PODS).json()["items"]] == ["c"]
    http.delete(PODS, params={"fieldSelector": "metadata.name=c"})
    assert http.get(PODS).json()["items"] == []


# ---- namespaces

def test_system_namespaces_exist_and_cannot_be_deleted(http):
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert http.get(f"/api/v1/namespaces/{name}").json()["status"]["phase"] == "Active"
    assert http.delete("/api/v1/namespaces/default").status_code == 403


def test_deleting_a_namespace_deletes_its_content(http):
    http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    http.post("/api/v1/namespaces/doomed/pods", json=pod("p"))
    http.post("/api/v1/namespaces/doomed/configmaps",
              json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    http.post("/api/v1/namespaces/doomed/services", json=service("s"))
    resp = http.delete("/api/v1/namespaces/doomed")
    assert resp.status_code == 200 and resp.json()["status"]["phase"] == "Terminating"
    refused = http.post("/api/v1/namespaces/doomed/pods", json=pod("late"))
    assert refused.status_code in (403, 404)
    assert wait_for(lambda: http.get("/api/v1/namespaces/doomed").status_code == 404)
    assert http.get("/api/v1/namespaces/doomed/pods").json()["items"] == []
    assert http.get("/api/v1/namespaces/doomed/configmaps").json()["items"] == []
    allocated = http.post(SERVICES, json=service("again")).json()
    assert allocated["spec"]["clusterIP"]


# ---- allocation

def test_cluster_ips_are_unique_under_50_concurrent_creates(http, apiserver):
    def create(i):
        with apiserver.client() as client:
            return client.post(SERVICES, json=service(f"s{i}", "NodePort"))

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(create, range(50)))
    assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201][:1]
    ips = [r.json()["spec"]["clusterIP"] for r in results]
    ports = [r.json()["spec"]["ports"][0]["nodePort"] for r in results]
    assert len(set(ips)) == 50 and len(set(ports)) == 50
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12") for ip in ips)
    assert all(30000 <= p <= 32767 for p in ports)


def test_explicit_values_are_honoured_or_refused(http):
    first = http.post(SERVICES, json=service("a", "NodePort", clusterIP="10.96.0.50",
                                             ports=[{"port": 80, "nodePort": 30080}])).json()
    assert first["spec"]["clusterIP"] == "10.96.0.50" and first["spec"]["ports"][0]["nodePort"] == 30080
    taken_ip = http.post(SERVICES, json=service("b", clusterIP="10.96.0.50"))
    assert taken_ip.status_code == 422 and "spec.clusterIPs" in taken_ip.json()["message"]
    taken_port = http.post(SERVICES, json=service("c", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert taken_port.status_code == 422 and taken_port.json()["details"]["causes"][0]["field"] == "spec.ports[0].nodePort"
    outside = http.post(SERVICES, json=service("d", clusterIP="192.168.1.1"))
    assert outside.status_code == 422
    assert http.get(f"{SERVICES}/b").status_code == 404
    headless = http.post(SERVICES, json=service("h", clusterIP="None")).json()
    assert headless["spec"]["clusterIP"] == "None"


def test_delete_frees_ip_and_port(http):
    http.post(SERVICES, json=service("a", "NodePort", clusterIP="10.96.0.60", ports=[{"port": 80, "nodePort": 30090}]))
    assert http.delete(f"{SERVICES}/a").status_code == 200
    again = http.post(SERVICES, json=service("b", "NodePort", clusterIP="10.96.0.60",
                                             ports=[{"port": 80, "nodePort": 30090}]))
    assert again.status_code == 201


def test_update_keeps_allocations_and_type_change_allocates(http):
    created = http.post(SERVICES, json=service("a")).json()
    ip = created["spec"]["clusterIP"]
    node_port = http.patch(f"{SERVICES}/a", json={"spec": {"type": "NodePort"}}, headers=MERGE).json()
    assert node_port["spec"]["clusterIP"] == ip and 30000 <= node_port["spec"]["ports"][0]["nodePort"] <= 32767
    port = node_port["spec"]["ports"][0]["nodePort"]
    relabelled = http.patch(f"{SERVICES}/a", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE).json()
    assert relabelled["spec"]["ports"][0]["nodePort"] == port
    back = http.patch(f"{SERVICES}/a", json={"spec": {"type": "ClusterIP"}}, headers=MERGE).json()
    assert "nodePort" not in back["spec"]["ports"][0]
    reuse = http.post(SERVICES, json=service("b", "NodePort", ports=[{"port": 80, "nodePort": port}]))
    assert reuse.status_code == 201


# ---- selectors

@pytest.mark.parametrize("selector,expected", [
    ("app=web", {"a", "b"}),
    ("app==web", {"a", "b"}),
    ("app!=web", {"c", "d"}),
    ("app in (web,db)", {"a", "b", "c"}),
    ("app notin (web)", {"c", "d"}),
    ("tier", {"a", "c"}),
    ("!tier", {"b", "d"}),
    ("app=web,tier", {"a"}),
])
def test_label_selector_operators(http, selector, expected):
    for name, labels in (("a", {"app": "web", "tier": "1"}), ("b", {"app": "web"}),
                         ("c", {"app": "db", "tier": "2"}), ("d", {})):
        http.post(PODS, json=pod(name, labels))
    got = {p["metadata"]["name"] for p in http.get(PODS, params={"labelSelector": selector}).json()["items"]}
    assert got == expected


def test_pod_field_selectors(http):
    http.post(PODS, json=pod("a"))
    http.post(PODS, json={**pod("b"), "spec": {**pod("b")["spec"], "nodeName": "n1"}})
    on_node = http.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=n1"}).json()["items"]
    assert [p["metadata"]["name"] for p in on_node] == ["b"]
    unbound = http.get(PODS, params={"fieldSelector": "spec.nodeName="}).json()["items"]
    assert [p["metadata"]["name"] for p in unbound] == ["a"]
    pending = http.get(PODS, params={"fieldSelector": "status.phase!=Running"}).json()["items"]
    assert len(pending) == 2


def test_selected_pages_never_skip_objects(http):
    for i in range(6):
        http.post(PODS, json=pod(f"p{i}", {"even": str(i % 2 == 0).lower()}))
    names, token = [], None
    while True:
        params = {"labelSelector": "even=true", "limit": 2, **({"continue": token} if token else {})}
        page = http.get(PODS, params=params).json()
        names += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == ["p0", "p2", "p4"]


def test_dry_run_update_and_delete_change_nothing(http):
    path = "/api/v1/namespaces/default/configmaps"
    http.post(path, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x/y"]},
                          "data": {"a": "1"}})
    before = http.get(f"{path}/c").json()
    patched = http.patch(f"{path}/c", params={"dryRun": "All"}, json={"data": {"a": "2"}}, headers=MERGE)
    assert patched.status_code == 200 and patched.json()["data"] == {"a": "2"}
    deleted = http.delete(f"{path}/c", params={"dryRun": "All"})
    assert deleted.status_code == 200 and deleted.json()["metadata"]["deletionTimestamp"]
    assert http.get(f"{path}/c").json() == before
    http.delete(f"{path}/c")
    released = http.patch(f"{path}/c", params={"dryRun": "All"}, json={"metadata": {"finalizers": None}},
                          headers=MERGE)
    assert released.status_code == 200
    assert http.get(f"{path}/c").status_code == 200
    svc = http.post(SERVICES, json=service("s")).json()
    as_node_port = http.patch(f"{SERVICES}/s", params={"dryRun": "All"}, json={"spec": {"type": "NodePort"}},
                              headers=MERGE).json()
    port = as_node_port["spec"]["ports"][0]["nodePort"]
    assert http.get(f"{SERVICES}/s").json() == svc
    assert http.post(SERVICES, json=service("t", "NodePort", ports=[{"port": 80, "nodePort": port}])).status_code == 201


def test_expired_events_are_swept(http, apiserver):
    import datetime

    from pkube.apiserver.event_ttl import EventReaper

    def event(name: str, last: str) -> dict:
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Test", "message": "m", "type": "Normal", "lastTimestamp": last}

    def stamp(moment: datetime.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    events = "/api/v1/namespaces/default/events"
    start = datetime.datetime.now(datetime.timezone.utc)
    http.post(events, json=event("old", stamp(start)))
    http.post(events, json=event("fresh", stamp(start + datetime.timedelta(minutes=90))))
    later = start + datetime.timedelta(hours=2)
    reaper = EventReaper(apiserver.storage, ttl=3600, now=lambda: later)
    assert apiserver.run(reaper.sweep_once()) == 1
    assert [e["metadata"]["name"] for e in http.get(events).json()["items"]] == ["fresh"]
