"""DaemonSets and StatefulSets with real containers on `pkube up`'s node, driven by the real kubectl."""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.test_kubelet_pods import apply, get_pod, kubectl, wait_running
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'echo "$MODE on $NODE" > /tmp/mode; exec sleep 3600']
        env:
        - {name: MODE, value: one}
        - name: NODE
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
"""

STATEFULSET = """\
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, "3600"]
"""


def daemon_pods(cluster) -> list[dict]:
    pods = json.loads(kubectl(cluster, "get", "pods", "-l", "app=agent", "-o", "json").stdout)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_daemonset_runs_its_pod_on_the_node_and_rolls_out_a_new_template(node_cluster):
    apply(node_cluster, DAEMONSET)
    try:
        out = kubectl(node_cluster, "rollout", "status", "ds/agent", "--timeout=90s", timeout=100).stdout
        assert 'daemon set "agent" successfully rolled out' in out
        (pod,) = daemon_pods(node_cluster)
        assert pod["spec"]["nodeName"] == "e2e-node"
        wait_running(node_cluster, pod["metadata"]["name"])
        mode = kubectl(node_cluster, "exec", pod["metadata"]["name"], "--", "cat", "/tmp/mode").stdout
        assert mode == "one on e2e-node\n"
        row = kubectl(node_cluster, "get", "ds", "agent", "--no-headers").stdout.split()
        assert row[:6] == ["agent", "1", "1", "1", "1", "1"], row

        kubectl(node_cluster, "set", "env", "ds/agent", "MODE=two")
        kubectl(node_cluster, "rollout", "status", "ds/agent", "--timeout=90s", timeout=100)
        (new,) = wait_for(lambda: [p for p in daemon_pods(node_cluster)
                                   if p["metadata"]["uid"] != pod["metadata"]["uid"]], timeout=60)
        wait_running(node_cluster, new["metadata"]["name"])
        mode = kubectl(node_cluster, "exec", new["metadata"]["name"], "--", "cat", "/tmp/mode").stdout
        assert mode == "two on e2e-node\n"
        history = kubectl(node_cluster, "rollout", "history", "ds/agent").stdout.split()
        assert history[1:] == ["REVISION", "CHANGE-CAUSE", "1", "<none>", "2", "<none>"], history
    finally:
        kubectl(node_cluster, "delete", "ds", "agent", "--wait=true", "--timeout=60s", check=False, timeout=70)


def test_a_statefulset_starts_named_pods_that_come_back_under_their_names(node_cluster):
    apply(node_cluster, STATEFULSET)
    try:
        out = kubectl(node_cluster, "rollout", "status", "sts/db", "--timeout=90s", timeout=100).stdout
        assert "partitioned roll out complete: 2 new pods have been updated" in out
        first, second = get_pod(node_cluster, "db-0"), get_pod(node_cluster, "db-1")
        assert first["status"]["phase"] == second["status"]["phase"] == "Running"
        assert kubectl(node_cluster, "exec", "db-1", "--", "hostname").stdout == "db-1\n"
        assert kubectl(node_cluster, "get", "sts", "db", "--no-headers").stdout.split()[:2] == ["db", "2/2"]

        kubectl(node_cluster, "delete", "pod", "db-0", "--timeout=60s", timeout=70)
        back = wait_for(lambda: _other_pod(node_cluster, "db-0", first["metadata"]["uid"]), timeout=60)
        assert back["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
        wait_running(node_cluster, "db-0")
    finally:
        kubectl(node_cluster, "delete", "sts", "db", "--wait=true", "--timeout=60s", check=False, timeout=70)
        kubectl(node_cluster, "delete", "service", "db", check=False)


def _other_pod(cluster, name: str, uid: str):
    """The pod ``name`` when it is not the one with ``uid`` (None while absent or still the old one)."""
    found = kubectl(cluster, "get", "pod", name, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    pod = json.loads(found.stdout)
    return pod if pod["metadata"]["uid"] != uid else None
