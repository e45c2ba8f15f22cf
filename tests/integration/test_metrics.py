"""/metrics of every control-plane component, scraped as Prometheus would and parsed with
prometheus_client's parser: the counters move when a user does something (docs/metrics.md).

The apiserver runs as a real process (``python -m pkube.apiserver``) on the test's etcd; the
scheduler and the controller-manager as real processes with their loopback listener."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import secured
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import NODES, PODS, REPLICASETS
from pkube.client.rest import ApiClient
from pkube.cluster.components import Component, python_module
from pkube.cluster.etcd import free_port
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import REPO, start_component, stop_all
from tests.integration.test_scheduler import node, pod

PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")


def samples(text: str) -> list[tuple[str, dict, float]]:
    """Every sample of a text exposition: (name, labels, value)."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, metric: str, **labels) -> float:
    """The sum of the samples called ``metric`` whose labels include ``labels`` (0 when none)."""
    return sum(v for n, have, v in samples(text) if n == metric and labels.items() <= have.items())


def has(text: str, name: str) -> bool:
    return any(n == name for n, _, _ in samples(text))


@contextlib.contextmanager
def apiserver_process(etcd, tmp_path: Path, *flags: str, scheme: str = "http"):
    """``python -m pkube.apiserver`` on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    api = Component("apiserver", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint, "--port", str(port),
                                               "--compaction-interval", "0", *flags),
                    tmp_path / "apiserver.log",
                    health_url=f"http://127.0.0.1:{port}/readyz" if scheme == "http" else None)
    try:
        api.start()
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        api.stop()


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def test_apiserver_counts_requests_by_verb_resource_and_code(etcd, tmp_path):
    with apiserver_process(etcd, tmp_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/api/v1/namespaces/default/pods", json=pod("p")).status_code == 201
        assert http.post("/api/v1/namespaces/default/pods", json=pod("p")).status_code == 409
        assert http.get("/api/v1/namespaces/default/pods/p").status_code == 200
        text = http.get("/metrics").text

        assert value(text, "apiserver_request_total", verb="POST", resource="pods", code="201",
                     scope="namespace", group="", version="v1", component="apiserver") == 1
        assert value(text, "apiserver_request_total", verb="POST", resource="pods", code="409") == 1
        assert value(text, "apiserver_request_total", verb="GET", resource="pods", code="200", scope="resource") == 1
        assert value(text, "apiserver_request_duration_seconds_count", verb="POST", resource="pods") == 2
        assert value(text, "apiserver_request_duration_seconds_bucket", verb="POST", resource="pods", le="+Inf") == 2
        assert value(text, "etcd_request_duration_seconds_count", operation="create", type="pods") == 2
        assert value(text, "apiserver_storage_objects", resource="pods") == 1
        assert value(text, "apiserver_current_inflight_requests", request_kind="readOnly") == 1   # this scrape
        for name in PROCESS_METRICS:
            assert value(text, name) > 0, name

        assert http.post("/api/v1/namespaces/default/configmaps", json=configmap("c")).status_code == 201
        applied = http.patch("/api/v1/namespaces/default/configmaps/applied", params={"fieldManager": "test"},
                             content=yaml.safe_dump(configmap("applied")),
                             headers={"Content-Type": "application/apply-patch+yaml"})
        assert applied.status_code == 201, applied.text
        later = http.get("/metrics").text
        assert value(later, "apiserver_request_total", verb="APPLY", resource="configmaps", code="201") == 1
        assert value(later, "apiserver_request_total", verb="POST", resource="configmaps", code="201") == 1
        assert value(later, "apiserver_request_total", verb="POST", resource="pods", code="201") == 1


def test_apiserver_counts_watches_while_they_are_open(etcd, tmp_path):
    def watching(text: str) -> tuple[float, float]:
        return (value(text, "apiserver_longrunning_requests", verb="WATCH", resource="configmaps"),
                value(text, "apiserver_registered_watchers", resource="configmaps"))

    with apiserver_process(etcd, tmp_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("GET", "/api/v1/namespaces/default/configmaps", params={"watch": "1"}) as stream:
            assert stream.status_code == 200
            wait_for(lambda: watching(http.get("/metrics").text) == (1, 1))
        wait_for(lambda: watching(http.get("/metrics").text) == (0, 0))
        assert value(http.get("/metrics").text, "apiserver_request_total", verb="WATCH", resource="configmaps",
                     code="200") == 1


def kubeconfig_for(path: Path, url: str, pki: Path, who: str) -> Path:
    config = admin_kubeconfig(url, ca_data=__import__("base64").b64encode((pki / "ca.crt").read_bytes()).decode(),
                              client_cert=(pki / f"{who}.crt").read_bytes(), client_key=(pki / f"{who}.key").read_bytes())
    write_private(path, config)
    return path


def get_raw(tool: list[str], kubeconfig: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*tool, "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                   "PYTHONPATH": str(REPO)})


def test_kubectl_and_pkubectl_get_raw_metrics_as_rbac_allows(etcd, tmp_path):
    setup = secured.secured_flags(tmp_path / "secured")
    pki = tmp_path / "secured" / "pki"
    with apiserver_process(etcd, tmp_path, *setup.flags, scheme="https") as url:
        admin = kubeconfig_for(tmp_path / "admin.kubeconfig", url, pki, "admin")
        user = kubeconfig_for(tmp_path / "user.kubeconfig", url, pki, "user")
        kubectl = [str(Path(sys.executable).parent / "kubectl")]
        pkubectl = [sys.executable, "-m", "pkube.kubectl"]
        wait_for(lambda: get_raw(pkubectl, admin, tmp_path).returncode == 0, timeout=30)
        for tool in (kubectl, pkubectl):
            answer = get_raw(tool, admin, tmp_path)
            assert answer.returncode == 0, answer.stderr
            assert value(answer.stdout, "apiserver_request_total", verb="GET", subresource="/metrics") >= 1
        refused = get_raw(kubectl, user, tmp_path)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "bench-writers-monitoring"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "system:monitoring"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                 "name": secured.BENCH_GROUP}]}
        (tmp_path / "binding.yaml").write_text(yaml.safe_dump(binding))
        applied = subprocess.run([*kubectl, "--kubeconfig", str(admin), "apply", "-f", str(tmp_path / "binding.yaml")],
                                 capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                 env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert applied.returncode == 0, applied.stderr
        allowed = wait_for(lambda: (lambda a: a if a.returncode == 0 else None)(get_raw(kubectl, user, tmp_path)))
        assert has(allowed.stdout, "apiserver_request_total")


def replicaset(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                                          "resources": {"requests": {"cpu": "100m"}}}]}}}}


def scrape(port: int) -> str:
    """The component's /metrics; "" while it is not listening yet."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.ConnectError:
        return ""


def test_scheduler_and_controller_manager_serve_their_metrics(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    scheduler_port, controllers_port = free_port(), free_port()
    procs = [start_component("pkube.scheduler", ["--kubeconfig", str(kubeconfig), "--metrics-bind-address",
                                           f"127.0.0.1:{scheduler_port}"], tmp_path / "scheduler.log"),
             start_component("pkube.controllers", ["--kubeconfig", str(kubeconfig), "--controllers", "replicaset",
                                             "--metrics-bind-address", f"127.0.0.1:{controllers_port}"],
                             tmp_path / "controllers.log")]
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            api.create(NODES, node("n1", cpu="4"))
            api.create(REPLICASETS, replicaset("web", 2), "default")
            api.create(PODS, pod("huge", cpu="100"), "default")

            def scheduled():
                text = scrape(scheduler_port)
                return text if value(text, "scheduler_schedule_attempts_total", result="scheduled",
                                     profile="default-scheduler") == 2 else None
            text = wait_for(scheduled, timeout=30)
            assert value(text, "scheduler_scheduling_attempt_duration_seconds_count", result="scheduled") == 2
            text = wait_for(lambda: (lambda t: t if value(t, "scheduler_pending_pods", queue="unschedulable") == 1
                                     else None)(scrape(scheduler_port)))
            assert value(text, "scheduler_schedule_attempts_total", result="unschedulable") >= 1
            assert value(text, "scheduler_pending_pods", queue="active") == 0

            controllers = scrape(controllers_port)
            assert value(controllers, "workqueue_adds_total", name="replicaset") >= 1
            assert value(controllers, "workqueue_work_duration_seconds_count", name="replicaset") >= 1
            assert value(controllers, "workqueue_queue_duration_seconds_count", name="replicaset") >= 1
            assert has(controllers, "workqueue_depth") and has(controllers, "workqueue_retries_total")
            for text in (controllers, scrape(scheduler_port)):
                for name in PROCESS_METRICS:
                    assert value(text, name) > 0, name
            assert httpx.get(f"http://127.0.0.1:{scheduler_port}/nothing", timeout=10).status_code == 404
    finally:
        stop_all(procs)
