"""/metrics of the node's components on a `pkube up` cluster (docs/metrics.md): the kubelet's,
on its HTTPS API and authorized as nodes/metrics, and the proxy's on 127.0.0.1:10249; parsed
with prometheus_client's parser. Also the apiserver's through the real kubectl."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pkube.cluster import certs
from tests.e2e.test_kubelet_pods import apply, kubectl, pod_manifest, wait_running
from tests.helpers.waiting import wait_for

KUBECTL = shutil.which("kubectl")
PROXY_METRICS = "http://127.0.0.1:10249/metrics"


def value(text: str, metric: str, **labels) -> float:
    """The sum of the samples called ``metric`` whose labels include ``labels`` (0 when none)."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == metric and labels.items() <= s.labels.items())


def kubelet_get(cluster, path: str, cert: str = "") -> httpx.Response:
    """GET ``path`` from the node's kubelet, verified with the cluster CA (its serving
    certificate names the node, not 127.0.0.1), as ``cert`` (a certificate of the cluster's
    pki directory; none: anonymous)."""
    with cluster.http() as http:
        node = http.get("/api/v1/nodes/e2e-node").json()
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.check_hostname = False
    if cert:
        directory = certs.pki_dir(cluster.data_dir)
        context.load_cert_chain(str(directory / f"{cert}.crt"), str(directory / f"{cert}.key"))
    with httpx.Client(verify=context, timeout=30) as client:
        return client.get(f"https://127.0.0.1:{port}{path}")


def kubelet_metrics(cluster) -> str:
    """The kubelet's /metrics as the apiserver's kubelet client (system:kubelet-api-admin:
    nodes/metrics)."""
    answer = kubelet_get(cluster, "/metrics", "apiserver-kubelet-client")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_the_kubelet_counts_pod_starts_and_running_pods_and_containers(node_cluster):
    before = value(kubelet_metrics(node_cluster), "kubelet_pod_start_duration_seconds_count")
    apply(node_cluster, pod_manifest("metered", "  - name: main\n    image: busybox\n    command: [sleep, \"3600\"]\n"))
    try:
        wait_running(node_cluster, "metered")
        text = kubelet_metrics(node_cluster)
        assert value(text, "kubelet_pod_start_duration_seconds_count") >= before + 1
        assert value(text, "kubelet_running_pods") >= 1
        assert value(text, "kubelet_running_containers", container_state="running") >= 1
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
            assert value(text, name) > 0, name
        assert "kubelet_pleg_relist_duration_seconds_bucket" in text
    finally:
        kubectl(node_cluster, "delete", "pod", "metered", "--wait=false")


def test_the_kubelet_refuses_metrics_to_anonymous_callers(node_cluster):
    assert kubelet_get(node_cluster, "/metrics").status_code == 401


def test_the_proxy_times_each_sync_of_its_rules(node_cluster):
    def syncs() -> float:
        try:
            return value(httpx.get(PROXY_METRICS, timeout=10).text, "kubeproxy_sync_proxy_rules_duration_seconds_count")
        except httpx.ConnectError:
            return 0
    before = wait_for(syncs)                # the first full sync is done
    kubectl(node_cluster, "create", "service", "clusterip", "metered", "--tcp=80:8080")
    try:
        wait_for(lambda: syncs() > before)
        text = httpx.get(PROXY_METRICS, timeout=10).text
        assert value(text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0
        assert value(text, "process_resident_memory_bytes") > 0
    finally:
        kubectl(node_cluster, "delete", "service", "metered")


def test_the_real_kubectl_reads_the_apiservers_metrics(node_cluster):
    kubectl(node_cluster, "create", "configmap", "metered", "--from-literal=k=v")
    kubectl(node_cluster, "delete", "configmap", "metered")
    raw = subprocess.run([KUBECTL, "--kubeconfig", str(node_cluster.kubeconfig), "get", "--raw", "/metrics"],
                         capture_output=True, text=True, timeout=60)
    assert raw.returncode == 0, raw.stderr
    assert value(raw.stdout, "apiserver_request_total", verb="POST", resource="configmaps", code="201") >= 1
    assert value(raw.stdout, "apiserver_request_total", verb="DELETE", resource="configmaps", code="200") >= 1
    assert value(raw.stdout, "apiserver_storage_objects", resource="nodes") >= 1
