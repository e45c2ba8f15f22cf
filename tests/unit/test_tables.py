"""apiserver.tables: the Table kubectl prints, column for column."""

import datetime

import pytest

from pkube.apiserver.tables import format_endpoints, human_duration, pod_status_reason, to_table

NOW = datetime.datetime(2026, 1, 10, 12, 0, 0, tzinfo=datetime.timezone.utc)


def ago(**delta) -> str:
    return (NOW - datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"),
    (192, "3m12s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"),
    (8 * 3600 + 59, "8h"), (47 * 3600, "47h"), (51 * 3600, "2d3h"), (48 * 3600, "2d"),
    (45 * 86400, "45d"), (800 * 86400, "2y70d"), (3000 * 86400, "8y"),
])
def test_age_is_formatted_like_kubectl(seconds, text):
    assert human_duration(seconds) == text


def pod(**status) -> dict:
    return {"metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ago(seconds=42),
                         "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}]}, "status": status}


def running(name: str, ready=True, restarts=0) -> dict:
    return {"name": name, "ready": ready, "restartCount": restarts,
            "state": {"running": {"startedAt": ago(seconds=30)}}}


def test_pod_row_has_kubectl_columns_and_wide_cells():
    obj = pod(phase="Running", podIP="10.0.0.5", podIPs=[{"ip": "10.0.0.5"}],
              containerStatuses=[running("app"), running("side")])
    obj["spec"]["nodeName"] = "node-1"
    table = to_table("pods", [obj], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                     "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0] * 5 + [1] * 4
    assert table["rows"][0]["cells"] == ["web-1", "2/2", "Running", "0", "42s",
                                         "10.0.0.5", "node-1", "<none>", "<none>"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize("status, expected", [
    ({"phase": "Pending"}, "Pending"),
    ({"phase": "Pending", "containerStatuses": [
        {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]}, "ContainerCreating"),
    ({"phase": "Running", "containerStatuses": [
        {"name": "app", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
     "CrashLoopBackOff"),
    ({"phase": "Succeeded", "containerStatuses": [
        {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}, "Completed"),
    ({"phase": "Failed", "containerStatuses": [
        {"name": "app", "state": {"terminated": {"exitCode": 3}}}]}, "ExitCode:3"),
    ({"phase": "Pending", "initContainerStatuses": [
        {"name": "init", "state": {"running": {}}}]}, "Init:0/1"),
])
def test_pod_status_is_computed_like_kubectl(status, expected):
    obj = pod(**status)
    obj["spec"]["initContainers"] = [{"name": "init"}] if "initContainerStatuses" in status else []
    assert pod_status_reason(obj) == expected


def test_deleted_pod_shows_terminating():
    obj = pod(phase="Running", containerStatuses=[running("app")])
    obj["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert pod_status_reason(obj) == "Terminating"


def test_restarts_show_when_the_last_one_happened():
    status = running("app", restarts=2)
    status["lastState"] = {"terminated": {"finishedAt": ago(minutes=5)}}
    row = to_table("pods", [pod(phase="Running", containerStatuses=[status])], now=NOW)["rows"][0]
    assert row["cells"][3] == "2 (5m ago)"


def test_deployment_and_replicaset_rows():
    deploy = {"metadata": {"name": "web", "creationTimestamp": ago(days=2, hours=3)},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}},
              "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2, "replicas": 3}}
    table = to_table("deployments", [deploy], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table["rows"][0]["cells"] == ["web", "2/3", 3, 2, "2d3h", "app", "nginx:1", "app=web"]
    rs = to_table("replicasets", [deploy], now=NOW)["rows"][0]["cells"]
    assert rs[:5] == ["web", 3, 3, 2, "2d3h"]


def test_service_row_shows_ports_and_node_ports():
    svc = {"metadata": {"name": "web", "creationTimestamp": ago(seconds=5)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    cells = to_table("services", [svc], now=NOW)["rows"][0]["cells"]
    assert cells == ["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "5s", "app=web"]


def test_node_row_shows_readiness_roles_and_version():
    node = {"metadata": {"name": "n1", "creationTimestamp": ago(hours=1),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0-pkube"},
                       "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}}
    cells = to_table("nodes", [node], now=NOW)["rows"][0]["cells"]
    assert cells[:6] == ["n1", "Ready,SchedulingDisabled", "control-plane", "60m", "v1.32.0-pkube", "10.1.1.1"]


def test_endpoints_list_at_most_three():
    ep = {"subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}]}
    assert format_endpoints(ep) == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."
    assert format_endpoints({}) == "<none>"


def test_event_row_names_the_object():
    event = {"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "count": 3,
             "message": "Back-off restarting ", "involvedObject": {"kind": "Pod", "name": "web-1"},
             "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=30)}
    cells = to_table("events", [event], now=NOW)["rows"][0]["cells"]
    assert cells[:4] == ["30s", "Warning", "BackOff", "pod/web-1"]
    assert cells[6] == "Back-off restarting"


def test_other_kinds_and_include_object():
    secret = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "eQ=="}}
    assert to_table("secrets", [secret], now=NOW)["rows"][0]["cells"] == ["s", "Opaque", 2, "<unknown>"]
    table = to_table("widgets", [secret], now=NOW, include_object="Object")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["object"] is secret
    assert "object" not in to_table("secrets", [secret], include_object="None")["rows"][0]
    with pytest.raises(ValueError, match="includeObject"):
        to_table("secrets", [], include_object="All")


def test_sidecar_restarts_count_once_initialized():
    obj = pod(phase="Running", conditions=[{"type": "Initialized", "status": "True"}],
              initContainerStatuses=[{"name": "proxy", "restartCount": 2, "started": True, "ready": True,
                                      "state": {"running": {}}}],
              containerStatuses=[running("app", restarts=1), running("side")])
    obj["spec"]["initContainers"] = [{"name": "proxy", "restartPolicy": "Always"}]
    cells = to_table("pods", [obj], now=NOW)["rows"][0]["cells"]
    assert cells[1:4] == ["3/3", "Running", "3"]
