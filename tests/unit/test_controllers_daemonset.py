"""Pure logic of the DaemonSet controller: which nodes run a daemon pod, the per-node plan,
the rolling-update choices and the status."""

import datetime as dt

import pytest

from pkube.client.clock import FakeClock
from pkube.controllers import daemonset as d
from pkube.controllers import daemonset_nodes as dn
from pkube.controllers import history

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def ds(strategy=None, **pod_spec):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}], **pod_spec}}}}


def node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def pod(name, node_name, digest="new", ready=True, created="2026-01-01T00:00:00Z", phase="Running", deleting=False):
    meta = {"name": name, "namespace": "default", "labels": {"app": "agent", history.HASH_LABEL: digest},
            "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    return {"metadata": meta, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def taint(key, effect="NoSchedule", value=None):
    return {"key": key, "effect": effect, **({"value": value} if value else {})}


@pytest.mark.parametrize("pod_spec,the_node,expected", [
    ({}, node("n"), (True, True)),
    ({"nodeSelector": {"disk": "ssd"}}, node("n", {"disk": "ssd"}), (True, True)),
    ({"nodeSelector": {"disk": "ssd"}}, node("n", {"disk": "hdd"}), (False, False)),
    ({"nodeName": "other"}, node("n"), (False, False)),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}},
     node("n", {"zone": "b"}), (True, True)),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a", "b"]}]}]}}}},
     node("n", {"zone": "b"}), (False, False)),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}}}, node("n"), (True, True)),
    ({}, node("n", taints=[taint("dedicated")]), (False, True)),            # NoSchedule: keeps a running pod
    ({}, node("n", taints=[taint("dedicated", "NoExecute")]), (False, False)),
    ({"tolerations": [{"key": "dedicated", "operator": "Exists"}]},
     node("n", taints=[taint("dedicated", "NoExecute")]), (True, True)),
    ({}, node("n", taints=[taint("node.kubernetes.io/unschedulable")]), (True, True)),
    ({}, node("n", taints=[taint("node.kubernetes.io/not-ready", "NoExecute")]), (True, True)),
    ({}, node("n", taints=[taint("node.kubernetes.io/memory-pressure")]), (True, True)),
    ({}, node("n", taints=[taint("node.kubernetes.io/network-unavailable")]), (False, True)),
    ({"hostNetwork": True}, node("n", taints=[taint("node.kubernetes.io/network-unavailable")]), (True, True)),
])
def test_node_should_run(pod_spec, the_node, expected):
    assert dn.node_should_run(ds(**pod_spec), the_node) == expected


def test_eligibility_is_remembered_per_node_until_the_node_or_the_placement_changes():
    cache, the_ds = dn.EligibilityCache(), ds(nodeSelector={"run": "yes"})
    a, b = node("a", {"run": "yes"}), node("b")
    a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"] = "1", "1"
    assert cache.runs("ns/agent", the_ds, [a, b]) == {"a": (True, True), "b": (False, False)}
    b = node("b", {"run": "yes"})
    b["metadata"]["resourceVersion"] = "2"                            # labelled: answered again
    assert cache.runs("ns/agent", the_ds, [a, b]) == {"a": (True, True), "b": (True, True)}
    assert cache.runs("ns/agent", ds(nodeSelector={"run": "no"}), [a, b]) == {"a": (False, False),
                                                                               "b": (False, False)}


def test_daemon_tolerations_are_added_once_and_keep_the_templates():
    mine = {"key": "x", "operator": "Exists"}
    spec = {"tolerations": [mine, {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                   "effect": "NoExecute", "tolerationSeconds": 5}]}
    tolerations = dn.daemon_tolerations(spec)
    assert mine in tolerations
    unreachable = [t for t in tolerations if t["key"] == "node.kubernetes.io/unreachable"]
    assert unreachable == [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    assert len(tolerations) == 1 + 2 + 4


def test_new_pod_is_pinned_by_affinity_and_labelled_with_the_hash():
    spec = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}]}}}
    made = d.new_pod(ds(**spec), "n7", "abc")
    assert made["metadata"]["generateName"] == "agent-"
    assert made["metadata"]["labels"] == {"app": "agent", history.HASH_LABEL: "abc"}
    assert made["metadata"]["ownerReferences"][0]["uid"] == "ds-uid"
    affinity = made["spec"]["affinity"]["nodeAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [{"weight": 1}]
    assert dn.target_node(made) == "n7"


def test_manage_plan_creates_on_empty_nodes_and_removes_extra_failed_misplaced_and_orphaned_pods():
    the_ds = ds(nodeSelector={"run": "yes"})
    nodes = [node("a", {"run": "yes"}), node("b", {"run": "yes"}), node("c", {"run": "yes"}), node("d")]
    by_node = {"b": [pod("b2", "b", created="2026-01-02T00:00:00Z"), pod("b1", "b")],
               "c": [pod("c1", "c", phase="Failed")],
               "d": [pod("d1", "d")],
               "gone": [pod("g1", "gone", deleting=True)]}
    plan = d.manage_plan(dn.eligibility(the_ds, nodes), by_node, "new", surge=False)
    assert plan.create == ["a"]
    assert sorted(k.split("/")[1] for k in plan.delete) == ["b2", "c1", "d1", "g1"]
    assert plan.force == {"default/g1"}


def test_pods_to_replace_respects_max_unavailable_and_replaces_unavailable_old_pods_first():
    by_node = {"a": [pod("a", "a", "old")], "b": [pod("b", "b", "old")], "c": [pod("c", "c", "old", ready=False)],
               "d": [pod("d", "d", "new")]}

    def available(p):
        return p["status"]["conditions"][0]["status"] == "True"
    chosen = d.pods_to_replace(["a", "b", "c", "d"], by_node, "new", 2, available)
    assert [p["metadata"]["name"] for p in chosen] == ["c", "a", "b"]
    chosen = d.pods_to_replace(["a", "b", "c", "d", "e"], by_node, "new", 2, available)   # e has none yet
    assert [p["metadata"]["name"] for p in chosen] == ["c", "a"]


def test_nodes_with_writes_not_yet_seen_are_left_alone_and_count_as_unavailable():
    the_ds = ds()
    nodes = [node("a"), node("b"), node("c")]
    by_node = {"b": [pod("b1", "b", "old")], "c": [pod("c1", "c", "old")]}
    plan = d.manage_plan(dn.eligibility(the_ds, nodes), by_node, "new", surge=False, pending=frozenset({"a"}))
    assert plan.create == []                        # a's pod is being created: not a second one

    def available(p):
        return True
    chosen = d.pods_to_replace(["a", "b", "c"], by_node, "new", 2, available, pending=frozenset({"a"}))
    assert [p["metadata"]["name"] for p in chosen] == ["b1"]            # a takes one of the two
    chosen = d.pods_to_replace(["a", "b", "c"], by_node, "new", 2, available, pending=frozenset({"a", "b"}))
    assert chosen == []


def test_node_expectations_hold_a_node_until_its_writes_are_seen_or_expire():
    clock = FakeClock()
    expectations = d.NodeExpectations(clock, timeout=60)
    expectations.expect("ns/agent", "a", creates=1)
    expectations.expect("ns/agent", "b", deletes=["ns/b1"])
    assert expectations.pending("ns/agent") == {"a", "b"}
    expectations.created("ns/agent", "a")
    expectations.deleted("ns/agent", "b", "ns/other")
    assert expectations.pending("ns/agent") == {"b"}
    expectations.deleted("ns/agent", "b", "ns/b1")
    assert expectations.pending("ns/agent") == set()
    expectations.expect("ns/agent", "c", creates=1)
    clock.advance(61)
    assert expectations.pending("ns/agent") == set()
    assert expectations.pending("ns/unknown") == set()


def test_surge_moves_add_new_pods_within_the_surge_and_delete_old_ones_once_replaced():
    by_node = {"a": [pod("a-old", "a", "old"), pod("a-new", "a", "new")],
               "b": [pod("b-old", "b", "old"), pod("b-new", "b", "new", ready=False)],
               "c": [pod("c-old", "c", "old")], "d": [pod("d-old", "d", "old")]}

    def available(p):
        return p["status"]["conditions"][0]["status"] == "True"
    create, delete = d.surge_moves(["a", "b", "c", "d"], by_node, "new", 2, available)
    assert create == ["c"] and [p["metadata"]["name"] for p in delete] == ["a-old"]


def test_rolling_params_round_percentages_up_and_never_both_zero():
    assert d.rolling_params(ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}), 95) == (0, 10)
    assert d.rolling_params(ds({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%",
                                                                           "maxUnavailable": 0}}), 5) == (1, 0)
    assert d.rolling_params(ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}), 5) == (0, 1)


def test_status_counts_per_node_with_the_oldest_pod():
    nodes = [node("a"), node("b"), node("c"), node("x", taints=[taint("t", "NoExecute")])]
    by_node = {"a": [pod("a1", "a", "new")], "b": [pod("b1", "b", "old"), pod("b2", "b", "new",
                                                                            created="2026-01-02T00:00:00Z")],
               "x": [pod("x1", "x", "new")]}
    by_node["c"] = [pod("c1", "c", "new", ready=False)]
    status, wait = d.daemon_set_status(ds(), dn.eligibility(ds(), nodes), by_node, "new", NOW)
    assert status == {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                      "numberAvailable": 2, "updatedNumberScheduled": 2, "numberMisscheduled": 1,
                      "numberUnavailable": 1, "observedGeneration": 3}
    assert wait is None
