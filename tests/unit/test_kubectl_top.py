"""pkubectl top: the tables kubectl 1.32 prints for a recorded PodMetricsList / NodeMetricsList
(the expected text was printed by the real kubectl from these very documents, trailing
spaces included), and kubectl's message when the server has no Metrics API."""

import io
from types import SimpleNamespace

import pytest

from pkube.kubectl.errors import CliError
from pkube.kubectl.top import node_rows, pod_rows, tab_table, top_nodes, top_pods

POD_METRICS = [
    {"metadata": {"name": "web-7d4b9c", "namespace": "default"}, "timestamp": "2026-12-04T16:00:00Z", "window": "10s",
     "containers": [{"name": "app", "usage": {"cpu": "1500000n", "memory": "10485760"}},
                    {"name": "sidecar", "usage": {"cpu": "250u", "memory": "2Mi"}}]},
    {"metadata": {"name": "a-long-pod-name-for-width", "namespace": "default"}, "timestamp": "2026-12-04T16:00:00Z",
     "window": "10s", "containers": [{"name": "main", "usage": {"cpu": "0", "memory": "123456Ki"}}]},
    {"metadata": {"name": "busy", "namespace": "default"}, "timestamp": "2026-12-04T16:00:00Z", "window": "10s",
     "containers": [{"name": "main", "usage": {"cpu": "2", "memory": "1Gi"}}]},
]
NODE_METRICS = [{"metadata": {"name": "n1"}, "timestamp": "2026-12-04T16:00:00Z", "window": "10s",
                 "usage": {"cpu": "250m", "memory": "1048576Ki"}}]
NODES = [{"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"},
                                                 "capacity": {"cpu": "4", "memory": "8Gi"}}},
         {"metadata": {"name": "n2"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}]


def test_top_pod_sums_containers_and_aligns_like_kubectl():
    assert tab_table(pod_rows(POD_METRICS)) == (
        "NAME                        CPU(cores)   MEMORY(bytes)   \n"
        "a-long-pod-name-for-width   0m           120Mi           \n"
        "busy                        2000m        1024Mi          \n"
        "web-7d4b9c                  2m           12Mi            \n")


def test_top_pod_containers():
    assert tab_table(pod_rows(POD_METRICS, containers=True)) == (
        "POD                         NAME      CPU(cores)   MEMORY(bytes)   \n"
        "a-long-pod-name-for-width   main      0m           120Mi           \n"
        "busy                        main      2000m        1024Mi          \n"
        "web-7d4b9c                  app       2m           10Mi            \n"
        "web-7d4b9c                  sidecar   1m           2Mi             \n")


def test_top_pod_sorted_by_memory_without_headers():
    assert tab_table(pod_rows(POD_METRICS, headers=False, sort_by="memory")) == (
        "busy                        2000m   1024Mi   \n"
        "a-long-pod-name-for-width   0m      120Mi    \n"
        "web-7d4b9c                  2m      12Mi     \n")
    with pytest.raises(CliError, match="cpu or memory"):
        pod_rows(POD_METRICS, sort_by="name")


def test_top_pod_all_namespaces_has_a_namespace_column():
    rows = pod_rows([dict(POD_METRICS[2], metadata={"name": "busy", "namespace": "team"})], namespaces=True)
    assert rows == [["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"], ["team", "busy", "2000m", "1024Mi"]]


def test_top_node_percentages_of_allocatable_or_capacity_and_unknown_nodes():
    assert tab_table(node_rows(NODE_METRICS, NODES)) == (
        "NAME   CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)   \n"
        "n1     250m         12%         1024Mi          25%         \n"
        "n2     <unknown>    <unknown>   <unknown>       <unknown>   \n")
    assert tab_table(node_rows(NODE_METRICS, NODES, capacity=True)) == (
        "NAME   CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)   \n"
        "n1     250m         6%          1024Mi          12%         \n"
        "n2     <unknown>    <unknown>   <unknown>       <unknown>   \n")


class DiscoveryOnly:
    """A session whose server lists these API groups and nothing else."""

    def __init__(self, groups: list[str]):
        self.groups = groups
        self.namespace = "default"

    def get_json(self, path, params=None):
        assert path == "/apis", path
        return {"groups": [{"name": g, "versions": [{"version": "v1"}]} for g in self.groups]}


@pytest.mark.parametrize("top", [top_pods, top_nodes])
def test_without_the_metrics_api_top_says_so(top):
    args = SimpleNamespace(name=None, selector=None, all_namespaces=False, containers=False, no_headers=False,
                           sort_by=None, show_capacity=False)
    with pytest.raises(CliError, match="^Metrics API not available$"):
        top(DiscoveryOnly(["apps", "metrics.k8s.io.example"]), args, io.StringIO(), io.StringIO())
