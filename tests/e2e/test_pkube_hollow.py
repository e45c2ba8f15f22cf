"""A whole control plane at work: `pkube up`, `pkube hollow`, then a Deployment through kubectl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import pkube


def kubectl(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)


def until(check, timeout: float = 60.0, period: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


@pytest.fixture
def hollow_nodes(cluster):
    proc = subprocess.Popen([sys.executable, "-m", "pkube.cluster", "hollow", "--data-dir", str(cluster.data_dir),
                             "--nodes", "3", "--name-prefix", "e2e-hollow-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


def ready_nodes(cluster) -> list[str]:
    result = kubectl(cluster, "get", "nodes", "-o", "json")
    if result.returncode:
        return []
    return [n["metadata"]["name"] for n in json.loads(result.stdout)["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]


def test_hollow_without_cluster_is_one_clear_line(tmp_path):
    result = pkube("hollow", "--data-dir", str(tmp_path), "--nodes", "1")
    assert result.returncode != 0
    assert "no cluster is running" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_deployment_is_scheduled_and_becomes_available_on_hollow_nodes(cluster, hollow_nodes):
    assert until(lambda: len([n for n in ready_nodes(cluster) if n.startswith("e2e-hollow-")]) == 3), \
        "3 hollow nodes never became Ready"
    created = kubectl(cluster, "create", "deployment", "hollow-web", "--image=busybox", "--replicas=4",
                      "--", "sleep", "3600")
    assert created.returncode == 0, created.stderr
    rollout = kubectl(cluster, "rollout", "status", "deployment/hollow-web", "--timeout=60s")
    assert rollout.returncode == 0, rollout.stderr
    assert 'successfully rolled out' in rollout.stdout
    pods = json.loads(kubectl(cluster, "get", "pods", "-l", "app=hollow-web", "-o", "json").stdout)["items"]
    assert len(pods) == 4
    assert {p["spec"]["nodeName"] for p in pods} <= set(ready_nodes(cluster))
    assert all(p["status"]["phase"] == "Running" and p["status"].get("podIP") for p in pods)
    assert kubectl(cluster, "delete", "deployment", "hollow-web").returncode == 0
    assert until(lambda: "hollow-web" not in kubectl(cluster, "get", "pods").stdout, timeout=60)


def test_hollow_says_what_it_started_marks_its_pods_and_exits_with_its_cluster(tmp_path):
    from pkube.cluster.etcd import free_port
    from tests.e2e.conftest import start_cluster
    cluster = start_cluster(tmp_path / "c", free_port())
    proc = subprocess.Popen([sys.executable, "-m", "pkube.cluster", "hollow", "--kubeconfig", str(cluster.kubeconfig),
                             "--nodes", "2", "--name-prefix", "gone-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "2 simulated nodes (gone-0 .. gone-1)" in first and "no container runs" in first
        kubectl(cluster, "run", "ghost", "--image=busybox", "--", "sleep", "1")
        pod = until(lambda: (lambda r: json.loads(r.stdout) if r.returncode == 0 and
                             json.loads(r.stdout)["status"].get("phase") == "Running" else None)(
            kubectl(cluster, "get", "pod", "ghost", "-o", "json")))
        simulated = next(c for c in pod["status"]["conditions"] if c["type"] == "pkube.io/Simulated")
        assert "no container runs" in simulated["message"]
    finally:
        pkube("down", "--data-dir", str(cluster.data_dir))
    assert proc.wait(40) == 0
    assert "has not answered" in proc.stdout.read()
