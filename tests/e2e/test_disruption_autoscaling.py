"""Disruption budgets and autoscaling on the shared `node_cluster` (one real kubelet, node
"e2e-node"), driven with the real kubectl.

Drain: with one node, "until a replacement is Ready elsewhere" cannot happen, so the
single-node version: the budget's pods tolerate the cordon (node.kubernetes.io/unschedulable),
`kubectl drain` of only those pods (--pod-selector) is held back with kubectl's 429 line, and
goes through once a third replica is Ready (currentHealthy 3 > minAvailable 2): one eviction,
its replacement Ready, the next eviction. The node is uncordoned whatever happens.

HPA: a Deployment of busybox burning CPU (request 50m, limit 100m: ~200% of its request) is
scaled from 1 to 2 by an autoscaler targeting 50%, and back to 1 once the load stops (the
autoscaler's scaleDown stabilizationWindowSeconds is 0, so no 5-minute wait).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from tests.e2e.test_kubelet_pods import KUBECTL, apply, kubectl
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

NODE = "e2e-node"
RETRY = "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."

DRAINED = """apiVersion: apps/v1
kind: Deployment
metadata: {name: drainme}
spec:
  replicas: 2
  selector: {matchLabels: {app: drainme}}
  template:
    metadata: {labels: {app: drainme}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: drainme}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: drainme}}
"""

BURN = """apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, "while [ ! -e /tmp/stop ]; do :; done; exec sleep 3600"]
        resources: {requests: {cpu: 50m}, limits: {cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
"""


def get_json(cluster, *args) -> dict:
    return json.loads(kubectl(cluster, "get", *args, "-o", "json").stdout)


def pdb_status(cluster) -> dict:
    return get_json(cluster, "pdb", "drainme").get("status") or {}


class Lines:
    """The lines a process writes to a stream, collected by a thread as they come."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()


def test_kubectl_drain_waits_for_the_budget(node_cluster):
    apply(node_cluster, DRAINED)
    drain = None
    try:
        kubectl(node_cluster, "rollout", "status", "deployment/drainme", "--timeout=90s")
        wait_for(lambda: pdb_status(node_cluster).get("currentHealthy") == 2, timeout=30)
        status = pdb_status(node_cluster)
        assert (status["desiredHealthy"], status["expectedPods"], status["disruptionsAllowed"]) == (2, 2, 0)
        table = kubectl(node_cluster, "get", "pdb", "drainme").stdout.splitlines()
        assert table[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
        assert table[1].split()[:4] == ["drainme", "2", "N/A", "0"]
        originals = {p["metadata"]["name"] for p in get_json(node_cluster, "pods", "-l", "app=drainme")["items"]}

        drain = subprocess.Popen([KUBECTL, "--kubeconfig", str(node_cluster.kubeconfig), "drain", NODE,
                                  "--pod-selector", "app=drainme", "--timeout=180s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = Lines(drain.stdout), Lines(drain.stderr)
        wait_for(lambda: any(RETRY in line for line in err.lines), timeout=60)
        pods = get_json(node_cluster, "pods", "-l", "app=drainme")["items"]
        assert {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")} == originals

        kubectl(node_cluster, "scale", "deployment/drainme", "--replicas=3")
        assert drain.wait(timeout=180) == 0, "".join(err.lines)
        out.thread.join(5)
        assert out.lines[-1] == f"node/{NODE} drained\n"
        assert sorted(line for line in out.lines if line.endswith("evicted\n")) == \
            sorted(f"pod/{name} evicted\n" for name in originals)
        left = {p["metadata"]["name"] for p in get_json(node_cluster, "pods", "-l", "app=drainme")["items"]}
        assert not left & originals
    finally:
        if drain is not None and drain.poll() is None:
            drain.kill()
        kubectl(node_cluster, "uncordon", NODE, check=False)
        kubectl(node_cluster, "delete", "-f", "-", "--wait=false", "--ignore-not-found", input=DRAINED, check=False)


def hpa_replicas(cluster) -> int:
    return int(get_json(cluster, "deployment", "burn")["spec"]["replicas"])


def test_an_autoscaler_scales_a_deployment_up_under_cpu_load_and_back_down(node_cluster):
    apply(node_cluster, BURN)
    try:
        wait_for(lambda: hpa_replicas(node_cluster) == 2, timeout=150)
        targets = kubectl(node_cluster, "get", "hpa", "burn").stdout.splitlines()
        assert targets[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert targets[1].split()[:3] == ["burn", "Deployment/burn", "cpu:"]
        assert targets[1].split()[3].endswith("%/50%")
        kubectl(node_cluster, "rollout", "status", "deployment/burn", "--timeout=90s")

        for pod in get_json(node_cluster, "pods", "-l", "app=burn")["items"]:
            kubectl(node_cluster, "exec", pod["metadata"]["name"], "--", "touch", "/tmp/stop")
        wait_for(lambda: hpa_replicas(node_cluster) == 1, timeout=150)
        events = kubectl(node_cluster, "get", "events", "--field-selector", "reason=SuccessfulRescale").stdout
        assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in events
        assert "New size: 1; reason: All metrics below target" in events
    finally:
        kubectl(node_cluster, "delete", "-f", "-", "--wait=false", "--ignore-not-found", input=BURN, check=False)
