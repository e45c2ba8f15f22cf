"""Each filter and score plugin, table-tested on hand-made pods and nodes."""

import pytest

from pkube.scheduler.plugins import (balanced_allocation, host_ports, least_allocated, node_name,
                               node_ready_schedulable, node_resources_fit, node_selector_affinity,
                               selector_spread, taint_toleration)
from pkube.scheduler.types import NodeInfo, PodInfo


def make_pod(name="p", cpu=None, memory=None, node_selector=None, affinity=None, tolerations=None,
             ports=None, owner=None, node_name=None, init_cpu=None):
    resources = {"requests": {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}}
    container = {"name": "c", "image": "busybox", "resources": resources, "ports": ports or []}
    spec = {"containers": [container]}
    if init_cpu:
        spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": init_cpu}}}]
    for key, value in (("nodeSelector", node_selector), ("affinity", affinity),
                       ("tolerations", tolerations), ("nodeName", node_name)):
        if value:
            spec[key] = value
    meta = {"name": name, "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}]
    return {"metadata": meta, "spec": spec}


def make_node(name="n1", cpu="4", memory="8Gi", pods="110", labels=None, taints=None,
              unschedulable=False, ready=True):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def node_with(node=None, *pods):
    info = NodeInfo.from_node(node or make_node())
    for pod in pods:
        info.add_pod(PodInfo.from_pod(pod))
    return info


def verdict(plugin, pod, node):
    status = plugin.filter(PodInfo.from_pod(pod), node)
    return "ok" if status.ok else status.reason


@pytest.mark.parametrize("pod,node,expected", [
    (make_pod(cpu="1"), node_with(), "ok"),
    (make_pod(cpu="5"), node_with(), "Insufficient cpu"),
    (make_pod(cpu="2"), node_with(None, make_pod("a", cpu="2500m")), "Insufficient cpu"),
    (make_pod(cpu="1500m"), node_with(None, make_pod("a", cpu="2500m")), "ok"),
    (make_pod(memory="9Gi"), node_with(), "Insufficient memory"),
    (make_pod(cpu="5", memory="9Gi"), node_with(), "Insufficient cpu, Insufficient memory"),
    (make_pod(), node_with(make_node(pods="1"), make_pod("a")), "Too many pods"),
    (make_pod(), node_with(make_node(cpu="0"), make_pod("a")), "ok"),      # no requests: fits
    (make_pod(cpu="100m", init_cpu="5"), node_with(), "Insufficient cpu"),  # init containers count
])
def test_node_resources_fit(pod, node, expected):
    assert verdict(node_resources_fit, pod, node) == expected


def test_removing_a_pod_frees_its_resources():
    node = node_with(None, make_pod("a", cpu="4"))
    assert verdict(node_resources_fit, make_pod(cpu="1"), node) == "Insufficient cpu"
    node.remove_pod("default/a")
    assert verdict(node_resources_fit, make_pod(cpu="1"), node) == "ok"


AFFINITY_REASON = "node(s) didn't match Pod's node affinity/selector"


def required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def expr(key, op, *values):
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


LABELED = node_with(make_node(labels={"disk": "ssd", "zone": "a", "cores": "8"}))


@pytest.mark.parametrize("pod,expected", [
    (make_pod(node_selector={"disk": "ssd"}), "ok"),
    (make_pod(node_selector={"disk": "hdd"}), AFFINITY_REASON),
    (make_pod(node_selector={"disk": "ssd", "zone": "b"}), AFFINITY_REASON),
    (make_pod(affinity=required(expr("zone", "In", "a", "b"))), "ok"),
    (make_pod(affinity=required(expr("zone", "NotIn", "a"))), AFFINITY_REASON),
    (make_pod(affinity=required(expr("gpu", "NotIn", "x"))), "ok"),
    (make_pod(affinity=required(expr("disk", "Exists"))), "ok"),
    (make_pod(affinity=required(expr("disk", "DoesNotExist"))), AFFINITY_REASON),
    (make_pod(affinity=required(expr("cores", "Gt", "4"))), "ok"),
    (make_pod(affinity=required(expr("cores", "Lt", "4"))), AFFINITY_REASON),
    (make_pod(affinity=required(expr("zone", "In", "b"), expr("disk", "In", "ssd"))), "ok"),  # terms OR
    (make_pod(affinity=required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                                      {"key": "disk", "operator": "In", "values": ["hdd"]}]})),
     AFFINITY_REASON),                                                                          # exprs AND
    (make_pod(affinity=required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})), "ok"),
    (make_pod(affinity=required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})),
     AFFINITY_REASON),
])
def test_node_selector_and_required_affinity(pod, expected):
    assert verdict(node_selector_affinity, pod, LABELED) == expected


def test_bad_affinity_operator_is_a_clear_error():
    with pytest.raises(ValueError, match="operator 'Near'"):
        PodInfo.from_pod(make_pod(affinity=required(expr("zone", "Near", "a"))))


def test_preferred_affinity_scores_matching_weights_normalized():
    pod = PodInfo.from_pod(make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": expr("zone", "In", "a")},
        {"weight": 20, "preference": expr("disk", "In", "ssd")}]}}))
    nodes = [node_with(make_node(labels={"zone": "a", "disk": "ssd"})),
             node_with(make_node(labels={"zone": "a"})), node_with(make_node(labels={"disk": "ssd"})),
             node_with(make_node())]
    raw = [node_selector_affinity.score(pod, n) for n in nodes]
    assert raw == [100, 80, 20, 0]
    assert node_selector_affinity.normalize([40, 20, 0]) == [100, 50, 0]


NO_SCHEDULE = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


@pytest.mark.parametrize("tolerations,taints,expected", [
    (None, [NO_SCHEDULE], "node(s) had untolerated taint {dedicated: db}"),
    ([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}], [NO_SCHEDULE], "ok"),
    ([{"key": "dedicated", "value": "web"}], [NO_SCHEDULE], "node(s) had untolerated taint {dedicated: db}"),
    ([{"key": "dedicated", "operator": "Exists"}], [NO_SCHEDULE], "ok"),
    ([{"operator": "Exists"}], [NO_SCHEDULE], "ok"),
    ([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], [NO_SCHEDULE],
     "node(s) had untolerated taint {dedicated: db}"),
    (None, [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}],
     "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
    (None, [{"key": "soft", "effect": "PreferNoSchedule"}], "ok"),
])
def test_taint_toleration_filter(tolerations, taints, expected):
    assert verdict(taint_toleration, make_pod(tolerations=tolerations), node_with(make_node(taints=taints))) == expected


def test_prefer_no_schedule_taints_lower_the_score():
    soft = {"key": "soft", "effect": "PreferNoSchedule"}
    nodes = [node_with(make_node(taints=[])), node_with(make_node(taints=[soft])),
             node_with(make_node(taints=[soft, {"key": "soft2", "effect": "PreferNoSchedule"}]))]
    pod = PodInfo.from_pod(make_pod())
    assert taint_toleration.normalize([taint_toleration.score(pod, n) for n in nodes]) == [100, 50, 0]
    tolerant = PodInfo.from_pod(make_pod(tolerations=[{"key": "soft", "operator": "Exists"}]))
    assert [taint_toleration.score(tolerant, n) for n in nodes] == [0, 0, 1]


@pytest.mark.parametrize("node,tolerations,expected", [
    (make_node(), None, "ok"),
    (make_node(ready=False), None, "node(s) were not ready"),
    (make_node(unschedulable=True), None, "node(s) were unschedulable"),
    (make_node(unschedulable=True), [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}], "ok"),
    (make_node(ready=False), [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                               "effect": "NoSchedule"}], "ok"),
])
def test_node_ready_and_schedulable(node, tolerations, expected):
    assert verdict(node_ready_schedulable, make_pod(tolerations=tolerations), node_with(node)) == expected


PORT_REASON = "node(s) didn't have free ports for the requested pod ports"


def port(host_port, ip=None, protocol="TCP"):
    return [{"containerPort": 80, "hostPort": host_port, "protocol": protocol,
             **({"hostIP": ip} if ip else {})}]


@pytest.mark.parametrize("used,wanted,expected", [
    (port(8080), port(8081), "ok"),
    (port(8080), port(8080), PORT_REASON),
    (port(8080), port(8080, protocol="UDP"), "ok"),
    (port(8080, "10.0.0.1"), port(8080, "10.0.0.2"), "ok"),
    (port(8080, "10.0.0.1"), port(8080), PORT_REASON),
    (port(8080), port(8080, "10.0.0.2"), PORT_REASON),
])
def test_host_ports(used, wanted, expected):
    node = node_with(None, make_pod("a", ports=used))
    assert verdict(host_ports, make_pod(ports=wanted), node) == expected


def test_node_name():
    assert verdict(node_name, make_pod(), node_with()) == "ok"
    assert verdict(node_name, make_pod(node_name="n1"), node_with()) == "ok"
    assert verdict(node_name, make_pod(node_name="n2"), node_with()) == \
        "node(s) didn't match the requested node name"


def test_least_allocated_prefers_the_emptier_node():
    pod = PodInfo.from_pod(make_pod(cpu="1", memory="1Gi"))
    empty = node_with()
    busy = node_with(None, make_pod("a", cpu="2", memory="4Gi"))
    assert least_allocated.score(pod, empty) == 81       # cpu 75, memory 87
    assert least_allocated.score(pod, busy) == 31        # cpu 25, memory 37
    assert least_allocated.score(PodInfo.from_pod(make_pod(cpu="8")), empty) == 48  # cpu 0, memory 97 (200Mi default)


def test_pods_without_requests_are_scored_with_defaults():
    pod = PodInfo.from_pod(make_pod())
    assert (pod.cpu, pod.memory, pod.nonzero_cpu, pod.nonzero_memory) == (0, 0, 100, 200 * 1024 * 1024)


def test_balanced_allocation_prefers_even_usage():
    pod = PodInfo.from_pod(make_pod(cpu="1", memory="2Gi"))
    assert balanced_allocation.score(pod, node_with()) == 100                  # 25% and 25%
    skewed = node_with(None, make_pod("a", cpu="2"))                            # cpu 75%, memory ~27%
    assert balanced_allocation.score(pod, skewed) < 80


def test_selector_spread_prefers_nodes_with_fewer_siblings():
    pod = PodInfo.from_pod(make_pod(owner="rs-1"))
    nodes = [node_with(None), node_with(None, make_pod("a", owner="rs-1")),
             node_with(None, make_pod("b", owner="rs-1"), make_pod("c", owner="rs-1"), make_pod("d", owner="rs-2"))]
    raw = [selector_spread.score(pod, n) for n in nodes]
    assert raw == [0, 1, 2] and selector_spread.normalize(raw) == [100, 50, 0]
    assert selector_spread.score(PodInfo.from_pod(make_pod()), nodes[2]) == 0


def test_batch_scores_equal_per_node_scores():
    import random
    rng = random.Random(3)
    soft = {"key": "soft", "effect": "PreferNoSchedule"}
    nodes = []
    for i in range(60):
        node = node_with(make_node(f"n{i}", cpu=str(rng.choice([0, 1, 2, 8])), memory=rng.choice(["0", "1Gi", "8Gi"]),
                                   taints=[soft] if i % 3 == 0 else []),
                         *(make_pod(f"p{i}-{j}", cpu=f"{rng.randint(0, 3000)}m", memory=f"{rng.randint(0, 4096)}Mi",
                                    owner=rng.choice(["rs-1", "rs-2", None])) for j in range(rng.randint(0, 4))))
        nodes.append(node)
    for pod in (make_pod(cpu="500m", memory="1Gi", owner="rs-1"), make_pod(), make_pod(cpu="9")):
        info = PodInfo.from_pod(pod)
        for plugin in (least_allocated, balanced_allocation, selector_spread, taint_toleration):
            assert plugin.score_nodes(info, nodes) == [plugin.score(info, n) for n in nodes], plugin.NAME
