"""A pod whose required affinity names its nodes (a DaemonSet pod) is filtered on those alone."""

import pytest

from pkube.scheduler.framework import Framework
from pkube.scheduler.plugins.node_selector_affinity import node_names
from pkube.scheduler.types import PodInfo
from tests.unit.test_scheduler_framework import cache_with
from tests.unit.test_scheduler_plugins import make_node, make_pod, required


def named(*names, key="metadata.name", operator="In"):
    return {"matchFields": [{"key": key, "operator": operator, "values": list(names)}]}


@pytest.mark.parametrize("affinity,expected", [
    (None, None),
    (required(named("n1")), frozenset({"n1"})),
    (required(named("n1"), named("n2", "n3")), frozenset({"n1", "n2", "n3"})),
    (required(named("n1"), {"matchExpressions": [{"key": "a", "operator": "Exists"}]}), None),
    (required(named("n1", operator="NotIn")), None),
    (required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]},
                               {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}), frozenset({"n2"})),
])
def test_node_names_of_required_affinity(affinity, expected):
    assert node_names(PodInfo.from_pod(make_pod(affinity=affinity))) == expected


def test_named_pod_goes_to_its_node_among_many():
    cache = cache_with(*(make_node(f"n{i}") for i in range(300)))
    pod = PodInfo.from_pod(make_pod(affinity=required(named("n217"))))
    result = Framework().schedule(pod, cache.node_list())
    assert result.node == "n217"


def test_named_pod_whose_node_does_not_fit_gets_kubernetes_message():
    cache = cache_with(make_node("a", cpu="1"), make_node("b"), make_node("c"))
    pod = PodInfo.from_pod(make_pod(cpu="2", affinity=required(named("a"))))
    result = Framework().schedule(pod, cache.node_list())
    assert result.node is None
    assert result.message == ("0/3 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, "
                              "1 Insufficient cpu.")
    gone = Framework().schedule(PodInfo.from_pod(make_pod(affinity=required(named("x")))), cache.node_list())
    assert gone.message == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
