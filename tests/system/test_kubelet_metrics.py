"""The kubelet's /metrics on its HTTPS API (kubelet.server, kubelet.metrics) on a real
runtime: what the pod workers report is counted, parsed with prometheus_client's parser. The
whole kubelet's metrics on a cluster are in tests/e2e/test_metrics_node.py."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pkube.client.metrics import new_registry
from pkube.kubelet.metrics import KubeletMetrics
from tests.helpers.kubelet_pods import serving_kubelet

pytestmark = pytest.mark.root


def value(text: str, metric: str, **labels) -> float:
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == metric and labels.items() <= s.labels.items())


def test_the_kubelet_serves_its_metrics_on_its_api(rt, tmp_path):
    live: set = set()
    metrics = KubeletMetrics(new_registry(), lambda: live)
    with serving_kubelet(rt, tmp_path, metrics_registry=metrics.registry) as (_, url):
        with httpx.Client(base_url=url, verify=False, timeout=30) as http:
            assert value(http.get("/metrics").text, "kubelet_running_pods") == 0
            live.add("u1")
            metrics.pod_seen("u1")
            metrics.reported({"metadata": {"uid": "u1"}},
                             {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]})
            metrics.events_handled(0.001)
            answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert value(text, "kubelet_running_pods") == 1
    assert value(text, "kubelet_running_containers", container_state="running") == 1
    assert value(text, "kubelet_pod_start_duration_seconds_count") == 1
    assert value(text, "kubelet_pleg_relist_duration_seconds_count") == 1
    assert value(text, "process_resident_memory_bytes") > 0
