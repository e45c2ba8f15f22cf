"""Two `python -m controllers --leader-elect` processes: only the Lease holder acts, and the
standby takes over when the leader is killed."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from client.errors import ApiError
from client.kubeconfig import ClientConfig
from client.resources import LEASES, PODS, REPLICASETS
from client.rest import ApiClient
from tests.integration.test_controllers_replicaset import replica_set

REPO = Path(__file__).resolve().parents[2]
LEASE = "kube-controller-manager"


def start_manager(kubeconfig, identity, log_path):
    args = [sys.executable, "-m", "controllers", "--kubeconfig", str(kubeconfig), "--leader-elect",
            "--identity", identity, "--controllers", "replicaset", "--lease-duration", "2",
            "--renew-deadline", "1.5", "--retry-period", "0.25"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s")


def holder(api):
    try:
        return api.get(LEASES, LEASE, "kube-system")["spec"].get("holderIdentity")
    except Exception:  # noqa: BLE001 - not created yet
        return None


def live_pods(api):
    return [p for p in api.list(PODS, "default")["items"] if not p["metadata"].get("deletionTimestamp")]


class MostPods:
    """The largest number of pods seen at once on a watch of the namespace."""

    def __init__(self, url):
        self.most, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self.follow, args=(url,), daemon=True)
        self.thread.start()

    def follow(self, url):
        try:
            self._follow(url)
        except ApiError:
            pass     # the apiserver stopped at the end of the test

    def _follow(self, url):
        with ApiClient(ClientConfig(url)) as api:
            listed = api.list(PODS, "default")
            names = {p["metadata"]["name"] for p in listed["items"]}
            rv = listed["metadata"]["resourceVersion"]
            for kind, pod in api.watch(PODS, "default", rv, timeout_seconds=60):
                if kind == "BOOKMARK":
                    continue
                (names.discard if kind == "DELETED" else names.add)(pod["metadata"]["name"])
                self.most = max(self.most, len(names))
                if self.stop.is_set():
                    return


def kubeconfig_for(url, path):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path


def test_only_the_leader_acts_and_a_standby_takes_over_within_20s(apiserver, tmp_path):
    kubeconfig = kubeconfig_for(apiserver.url, tmp_path / "kubeconfig")
    procs = []
    most = MostPods(apiserver.url)
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            procs.append(start_manager(kubeconfig, "first", tmp_path / "first.log"))
            wait_for(lambda: holder(api) == "first")
            procs.append(start_manager(kubeconfig, "second", tmp_path / "second.log"))
            time.sleep(1)                       # the standby is up and polling the Lease
            api.create(REPLICASETS, replica_set("ha", 3), "default")
            wait_for(lambda: len(live_pods(api)) == 3)
            time.sleep(1)
            assert holder(api) == "first" and len(live_pods(api)) == 3 and most.most == 3

            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            killed_at = time.monotonic()
            api.patch(REPLICASETS, "ha", {"spec": {"replicas": 5}}, "default")
            wait_for(lambda: len(live_pods(api)) == 5)
            assert time.monotonic() - killed_at < 20
            lease = api.get(LEASES, LEASE, "kube-system")["spec"]
            assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("second", 1)
            assert most.most == 5
    finally:
        most.stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
