"""Persistent volumes with real containers on `pkube up`'s node, driven by the real kubectl: the
default `local-path` class provisions a directory under the data dir on the node the pod lands
on, its data outlives the pod (a StatefulSet's replacement pod finds it), and deleting the claim
removes the volume and the directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_kubelet_pods import apply, get_pod, kubectl, pod_manifest, wait_running
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: notes}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"""

WRITER = """\
  - name: c
    image: busybox
    command: [sh, -c, 'echo hello from the pod > /data/note; exec sleep 3600']
    volumeMounts: [{name: data, mountPath: /data}]
"""

STATEFULSET = """\
apiVersion: v1
kind: Service
metadata: {name: kv}
spec:
  clusterIP: None
  selector: {app: kv}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kv}
spec:
  serviceName: kv
  replicas: 3
  selector: {matchLabels: {app: kv}}
  template:
    metadata: {labels: {app: kv}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'echo "started as $(hostname)" >> /data/log; exec sleep 3600']
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-path
      resources: {requests: {storage: 32Mi}}
"""


def get_json(cluster, *args) -> dict:
    return json.loads(kubectl(cluster, "get", *args, "-o", "json").stdout)


def volume_dir(cluster, claim: str) -> Path:
    """The host directory of a bound claim's volume."""
    pv = get_json(cluster, "pv", get_json(cluster, "pvc", claim)["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


def gone(cluster, *what) -> bool:
    return kubectl(cluster, "get", *what, check=False).returncode != 0


def test_a_pod_claim_of_the_default_class_is_a_directory_on_the_node_until_the_claim_goes(node_cluster):
    classes = kubectl(node_cluster, "get", "storageclass", "--no-headers").stdout
    assert classes.split()[:5] == ["local-path", "(default)", "pkube.io/local-path", "Delete", "WaitForFirstConsumer"]
    apply(node_cluster, CLAIM)
    try:
        pending = kubectl(node_cluster, "get", "pvc", "notes", "--no-headers").stdout.split()
        assert pending[:2] == ["notes", "Pending"]          # WaitForFirstConsumer: no pod yet
        apply(node_cluster, pod_manifest("notes-writer", WRITER,
                                         "  volumes: [{name: data, persistentVolumeClaim: {claimName: notes}}]\n"))
        wait_running(node_cluster, "notes-writer", timeout=90)
        row = kubectl(node_cluster, "get", "pvc", "notes", "--no-headers").stdout.split()
        assert row[0:2] == ["notes", "Bound"] and row[3:6] == ["64Mi", "RWO", "local-path"]
        directory = volume_dir(node_cluster, "notes")
        assert directory.parent == node_cluster.data_dir.resolve() / "storage"
        assert (directory / "note").read_text() == "hello from the pod\n"
        volume = get_json(node_cluster, "pvc", "notes")["spec"]["volumeName"]
        described = kubectl(node_cluster, "describe", "pvc", "notes").stdout
        assert "Used By:       notes-writer" in described and "Capacity:      64Mi" in described
        pdescribed = subprocess.run([sys.executable, "-m", "pkube.kubectl", "--kubeconfig", str(node_cluster.kubeconfig),
                                     "describe", "pvc", "notes"], capture_output=True, text=True, timeout=60)
        assert pdescribed.returncode == 0 and "notes" in pdescribed.stdout, pdescribed.stderr

        kubectl(node_cluster, "delete", "pod", "notes-writer", "--timeout=60s", timeout=70)
        kubectl(node_cluster, "delete", "pvc", "notes", "--timeout=60s", timeout=70)
        wait_for(lambda: gone(node_cluster, "pv", volume), timeout=60)
        assert not directory.exists()                  # the helper pod removed it on the node
    finally:
        kubectl(node_cluster, "delete", "pod", "notes-writer", "--ignore-not-found", "--timeout=60s", timeout=70)
        kubectl(node_cluster, "delete", "pvc", "notes", "--ignore-not-found", "--timeout=60s", timeout=70)


def test_a_statefulset_pod_finds_its_data_again_after_deletion(node_cluster):
    apply(node_cluster, STATEFULSET)
    claims = [f"data-kv-{i}" for i in range(3)]
    try:
        kubectl(node_cluster, "rollout", "status", "sts/kv", "--timeout=150s", timeout=160)
        for i, claim in enumerate(claims):
            assert get_json(node_cluster, "pvc", claim)["status"]["phase"] == "Bound"
            assert (volume_dir(node_cluster, claim) / "log").read_text() == f"started as kv-{i}\n"
        first = get_pod(node_cluster, "kv-1")
        volume = get_json(node_cluster, "pvc", "data-kv-1")["spec"]["volumeName"]

        kubectl(node_cluster, "delete", "pod", "kv-1", "--timeout=60s", timeout=70)
        wait_for(lambda: get_pod(node_cluster, "kv-1")["metadata"]["uid"] != first["metadata"]["uid"]
                 if not gone(node_cluster, "pod", "kv-1") else None, timeout=60)
        wait_running(node_cluster, "kv-1", timeout=90)
        assert get_json(node_cluster, "pvc", "data-kv-1")["spec"]["volumeName"] == volume
        assert kubectl(node_cluster, "exec", "kv-1", "--", "cat", "/data/log").stdout == \
            "started as kv-1\nstarted as kv-1\n"
    finally:
        kubectl(node_cluster, "delete", "sts", "kv", "--wait=true", "--timeout=60s", check=False, timeout=70)
        kubectl(node_cluster, "delete", "service", "kv", check=False)
        kubectl(node_cluster, "delete", "pvc", *claims, "--ignore-not-found", "--timeout=90s", check=False,
                timeout=100)
