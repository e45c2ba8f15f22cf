"""The kubelet killed (SIGKILL) in the middle of a Deployment's rolling update on a `pkube up`
cluster: once the supervisor has restarted it, the rollout finishes with exactly the replicas
asked for, every one from the new template, and the node runs no container of a pod that is
gone and no second copy of one that stayed."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from tests.e2e.test_kubelet_pods import kubectl
from tests.helpers.waiting import wait_for

REPLICAS = 3
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: rolling}
spec:
  replicas: 3
  selector: {matchLabels: {app: rolling}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: rolling}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, "%s"]
"""


def _sleepers(seconds: str) -> list[str]:
    """Pids of the containers' `sleep SECONDS` processes on this machine."""
    return subprocess.run(["pgrep", "-fx", f"sleep {seconds}"], capture_output=True, text=True).stdout.split()


def _kubelet_pids(cluster) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"kubelet --kubeconfig {cluster.data_dir}/kubelet.kubeconfig"],
                          capture_output=True, text=True).stdout.split()


def _pods(cluster) -> list[dict]:
    out = kubectl(cluster, "get", "pods", "-l", "app=rolling", "-o", "json").stdout
    return json.loads(out)["items"]


def test_a_kubelet_killed_mid_rollout_loses_and_duplicates_nothing(node_cluster):
    kubectl(node_cluster, "apply", "-f", "-", input=DEPLOYMENT % "3701")
    try:
        kubectl(node_cluster, "rollout", "status", "deployment/rolling", "--timeout=90s", timeout=100)
        assert len(_sleepers("3701")) == REPLICAS
        kubectl(node_cluster, "apply", "-f", "-", input=DEPLOYMENT % "3702")
        wait_for(lambda: _sleepers("3702"), timeout=60)          # the rollout is under way
        (kubelet,) = _kubelet_pids(node_cluster)
        os.kill(int(kubelet), signal.SIGKILL)
        wait_for(lambda: [p for p in _kubelet_pids(node_cluster) if p != kubelet], timeout=40)
        kubectl(node_cluster, "rollout", "status", "deployment/rolling", "--timeout=120s", timeout=130)
        wait_for(lambda: len(_pods(node_cluster)) == REPLICAS and not _sleepers("3701"), timeout=60)
        pods = _pods(node_cluster)
        assert all(p["spec"]["containers"][0]["command"] == ["sleep", "3702"] for p in pods)
        assert all(p["status"]["phase"] == "Running" for p in pods)
        assert len(_sleepers("3702")) == REPLICAS
    finally:
        kubectl(node_cluster, "delete", "deployment", "rolling", "--wait=false", check=False)
        wait_for(lambda: not _sleepers("3701") and not _sleepers("3702"), timeout=60)
