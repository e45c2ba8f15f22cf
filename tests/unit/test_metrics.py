"""The metric helpers without a server: the workqueue's, the kubelet's pod counts and start
latency, the scheduler's pending pods, the apiserver's label rules, the loopback listener's
address flag."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pkube.apiserver.metrics import ApiserverMetrics, reported_verb, scope
from pkube.apiserver.requestinfo import request_info
from pkube.client.clock import FakeClock
from pkube.client.metrics import WorkqueueMetrics, parse_bind_address
from pkube.client.workqueue import WorkQueue
from pkube.kubelet.metrics import KubeletMetrics
from pkube.scheduler.metrics import SchedulerMetrics


def sample(registry: CollectorRegistry, metric: str, **labels) -> float:
    return registry.get_sample_value(metric, labels) or 0.0


def test_the_workqueue_counts_adds_retries_depth_and_durations():
    registry = CollectorRegistry()
    queue = WorkQueue(FakeClock(), metrics=WorkqueueMetrics(registry).for_queue("replicaset"))
    queue.add("a")
    queue.add("a")                 # already waiting: not an add
    queue.add("b")
    assert sample(registry, "workqueue_adds_total", name="replicaset") == 2
    assert sample(registry, "workqueue_depth", name="replicaset") == 2
    key = queue.get_nowait()
    assert sample(registry, "workqueue_queue_duration_seconds_count", name="replicaset") == 1
    queue.add_rate_limited(key)
    queue.done(key)
    assert sample(registry, "workqueue_retries_total", name="replicaset") == 1
    assert sample(registry, "workqueue_work_duration_seconds_count", name="replicaset") == 1
    assert sample(registry, "workqueue_depth", name="replicaset") == 1


def running(uid: str, states: list[str]) -> tuple[dict, dict]:
    pod = {"metadata": {"uid": uid}}
    status = {"phase": "Running", "containerStatuses": [{"state": {s: {}}} for s in states]}
    return pod, status


def test_the_kubelet_times_a_pod_start_once_and_counts_live_pods_and_containers():
    registry, live = CollectorRegistry(), {"u1", "u2"}
    metrics = KubeletMetrics(registry, lambda: live)
    metrics.pod_seen("u1")
    metrics.reported({"metadata": {"uid": "u1"}}, {"phase": "Pending"})
    assert sample(registry, "kubelet_pod_start_duration_seconds_count") == 0
    metrics.reported(*running("u1", ["running", "terminated"]))
    metrics.reported(*running("u1", ["running", "running"]))
    metrics.reported(*running("u2", ["waiting"]))          # adopted: never seen starting
    assert sample(registry, "kubelet_pod_start_duration_seconds_count") == 1
    assert sample(registry, "kubelet_running_pods") == 2
    assert sample(registry, "kubelet_running_containers", container_state="running") == 2
    assert sample(registry, "kubelet_running_containers", container_state="waiting") == 1
    live.discard("u1")
    assert sample(registry, "kubelet_running_pods") == 1
    assert sample(registry, "kubelet_running_containers", container_state="running") == 0


def test_the_scheduler_counts_pending_pods_by_queue_when_scraped():
    registry, places = CollectorRegistry(), ["active", "unschedulable", "unschedulable"]
    metrics = SchedulerMetrics(registry, "default-scheduler")
    metrics.measure_pending(lambda: places)
    metrics.attempt("scheduled", 0.01)
    assert sample(registry, "scheduler_pending_pods", queue="unschedulable") == 2
    assert sample(registry, "scheduler_pending_pods", queue="backoff") == 0
    assert sample(registry, "scheduler_schedule_attempts_total", result="scheduled",
                  profile="default-scheduler") == 1


@pytest.mark.parametrize("method, path, query, verb, where", [
    ("POST", "/api/v1/namespaces/default/pods", {}, "POST", "namespace"),
    ("GET", "/api/v1/namespaces/default/pods", {}, "LIST", "namespace"),
    ("GET", "/api/v1/pods", {"watch": "1"}, "WATCH", "cluster"),
    ("GET", "/api/v1/namespaces/default/pods/p", {}, "GET", "resource"),
    ("POST", "/api/v1/namespaces/default/pods/p/exec", {}, "CONNECT", "resource"),
    ("DELETE", "/apis/apps/v1/namespaces/default/deployments", {}, "DELETE", "namespace"),
    ("GET", "/api/v1/nodes", {}, "LIST", "cluster"),
])
def test_the_apiserver_labels_requests_as_kube_apiserver_does(method, path, query, verb, where):
    info = request_info(method, path, query)
    assert (reported_verb(info, method), scope(info)) == (verb, where)


def test_made_up_paths_cannot_grow_the_apiservers_series_for_ever(monkeypatch):
    monkeypatch.setattr("pkube.apiserver.metrics.MAX_LABEL_SETS", 3)
    registry = CollectorRegistry()
    metrics = ApiserverMetrics(registry)
    for i in range(10):
        metrics.observe(request_info("GET", f"/api/v1/made-up-{i}", {}), "GET", "", 404, 0.001)
    resources = {s.labels["resource"] for m in registry.collect() if m.name == "apiserver_request"
                 for s in m.samples}
    assert resources == {"made-up-0", "made-up-1", "made-up-2", "other"}
    assert sample(registry, "apiserver_request_total", verb="LIST", dry_run="", group="", version="v1",
                  resource="other", subresource="", scope="cluster", component="apiserver", code="404") == 7


@pytest.mark.parametrize("text, parsed", [("127.0.0.1:10251", ("127.0.0.1", 10251)), ("0", None),
                                          ("127.0.0.1:0", None), ("", None), (":9000", ("0.0.0.0", 9000)),
                                          ("[::1]:9000", ("::1", 9000))])
def test_the_metrics_bind_address(text, parsed):
    if text == "0":
        with pytest.raises(ValueError, match="want HOST:PORT"):
            parse_bind_address(text)
    else:
        assert parse_bind_address(text) == parsed


def test_the_proxy_times_each_table_sync_that_nft_accepted():
    import asyncio

    from pkube.client.fake import FakeApi
    from pkube.proxy.metrics import ProxyMetrics
    from pkube.proxy.rules import ProxyConfig
    from pkube.proxy.server import ProxyServer
    from tests.unit.test_proxy_rules import endpoint, endpoint_slice, service
    from tests.unit.test_proxy_server import TableNft

    registry, nft = CollectorRegistry(), TableNft()
    server = ProxyServer(FakeApi(), ProxyConfig(table="t", node_name="n1"), nft=nft, metrics=ProxyMetrics(registry))
    server.proxier.conntrack = None
    server.clock.sleep = lambda _s: asyncio.sleep(0)
    server.service_informer.apply_event("ADDED", service("web"))
    server.slice_informer.apply_event("ADDED", endpoint_slice("web", [endpoint("10.244.0.2")]))
    nft.broken = 1                   # the first write fails: not a sync
    asyncio.run(server.rebuild())
    assert sample(registry, "kubeproxy_sync_proxy_rules_duration_seconds_count") == 1
    assert sample(registry, "kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0
