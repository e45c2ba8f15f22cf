"""Two `python -m controllers --leader-elect` processes: only the Lease holder acts, and the
standby takes over when the leader is killed."""

import signal
import threading
import time

from client.errors import ApiError
from client.kubeconfig import ClientConfig
from client.resources import LEASES, PODS, REPLICASETS
from client.rest import ApiClient
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import lease_holder, start_component, stop_all
from tests.integration.test_controllers_replicaset import replica_set

LEASE = "kube-controller-manager"


def start_manager(kubeconfig, identity, log_path):
    return start_component("controllers", [
        "--kubeconfig", str(kubeconfig), "--leader-elect", "--identity", identity,
        "--controllers", "replicaset", "--lease-duration", "2", "--renew-deadline", "1.5",
        "--retry-period", "0.25"], log_path)


def holder(api):
    return lease_holder(api, LEASE, "kube-system")


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


def test_only_the_leader_acts_and_a_standby_takes_over_within_20s(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
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
            wait_for(lambda: most.most >= 3)    # the watch thread may lag the list
            assert holder(api) == "first" and len(live_pods(api)) == 3 and most.most == 3

            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            killed_at = time.monotonic()
            api.patch(REPLICASETS, "ha", {"spec": {"replicas": 5}}, "default")
            wait_for(lambda: len(live_pods(api)) == 5)
            assert time.monotonic() - killed_at < 20
            lease = api.get(LEASES, LEASE, "kube-system")["spec"]
            assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("second", 1)
            wait_for(lambda: most.most >= 5)    # the watch thread may lag the list
            time.sleep(1)                       # and a wrongly acting second manager would show
            assert most.most == 5
    finally:
        most.stop.set()
        stop_all(procs)
