"""Two `python -m pkube.controllers --leader-elect` processes: only the Lease holder acts, and the
standby takes over when the leader is killed.

No fixed sleeps: before counting pods, the test waits for positive signals (the standby talking
to the apiserver, the ReplicaSet's status for its current spec, the pod watch past a marker pod
created afterwards)."""

import os
import signal
import threading
import time
from urllib.parse import urlsplit

from pkube.client.errors import ApiError
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import LEASES, PODS, REPLICASETS
from pkube.client.rest import ApiClient
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import lease_holder, start_component, stop_all
from tests.integration.test_controllers_replicaset import orphan, replica_set

LEASE = "kube-controller-manager"


def start_manager(kubeconfig, identity, log_path):
    return start_component("pkube.controllers", [
        "--kubeconfig", str(kubeconfig), "--leader-elect", "--identity", identity,
        "--controllers", "replicaset", "--lease-duration", "2", "--renew-deadline", "1.5",
        "--retry-period", "0.25"], log_path)


def holder(api):
    return lease_holder(api, LEASE, "kube-system")


def live_pods(api):
    return [p for p in api.list(PODS, "default")["items"]
            if not p["metadata"].get("deletionTimestamp") and not is_marker(p["metadata"]["name"])]


def is_marker(name: str) -> bool:
    return name.startswith("marker-")


def connected_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to 127.0.0.1:`port`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open(f"/proc/{pid}/net/tcp") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return any(row[2] == f"0100007F:{port:04X}" and row[3] == "01" and row[9] in inodes for row in rows)


def settled(api, name: str, replicas: int) -> bool:
    """True once the ReplicaSet's controller has reported `replicas` for its current spec."""
    rs = api.get(REPLICASETS, name, "default")
    status = rs.get("status") or {}
    return status.get("observedGeneration") == rs["metadata"]["generation"] and status.get("replicas") == replicas


def watch_caught_up(api, most, tag: str) -> None:
    """Create a marker pod (no ReplicaSet selects it) and wait until the watch saw it: every
    pod event before it has then been counted."""
    api.create(PODS, orphan(f"marker-{tag}", {"marker": tag}), "default")
    wait_for(lambda: f"marker-{tag}" in most.seen)


class MostPods:
    """The largest number of pods seen at once on a watch of the namespace."""

    def __init__(self, url):
        self.most, self.stop, self.seen = 0, threading.Event(), set()
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
                name = pod["metadata"]["name"]
                self.seen.add(name)
                if not is_marker(name):
                    (names.discard if kind == "DELETED" else names.add)(name)
                self.most = max(self.most, len(names))
                if self.stop.is_set():
                    return


def test_only_the_leader_acts_and_a_standby_takes_over_within_20s(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    procs = []
    most = MostPods(apiserver.url)
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            procs.append(start_manager(kubeconfig, "first", tmp_path / "first.log"))
            wait_for(lambda: holder(api) == "first")
            procs.append(start_manager(kubeconfig, "second", tmp_path / "second.log"))
            port = urlsplit(apiserver.url).port
            wait_for(lambda: connected_to(procs[1].pid, port))   # the standby is up, polling the Lease
            api.create(REPLICASETS, replica_set("ha", 3), "default")
            wait_for(lambda: settled(api, "ha", 3))
            watch_caught_up(api, most, "first")
            assert holder(api) == "first" and len(live_pods(api)) == 3 and most.most == 3

            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            killed_at = time.monotonic()
            api.patch(REPLICASETS, "ha", {"spec": {"replicas": 5}}, "default")
            wait_for(lambda: len(live_pods(api)) == 5)
            assert time.monotonic() - killed_at < 20
            lease = api.get(LEASES, LEASE, "kube-system")["spec"]
            assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("second", 1)
            wait_for(lambda: settled(api, "ha", 5))
            watch_caught_up(api, most, "second")
            assert most.most == 5
    finally:
        most.stop.set()
        stop_all(procs)
