"""Two `python -m pkube.scheduler --leader-elect` processes: only the Lease holder schedules, and the
standby takes over when the leader is killed."""

import signal
import time

from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import LEASES, NODES, PODS
from pkube.client.rest import ApiClient
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import lease_holder, start_component, stop_all
from tests.integration.test_scheduler import node, pod


def start_scheduler(kubeconfig, identity, log_path):
    return start_component("pkube.scheduler", [
        "--kubeconfig", str(kubeconfig), "--leader-elect", "--identity", identity,
        "--lease-namespace", "default", "--lease-duration", "2", "--renew-deadline", "1.5",
        "--retry-period", "0.25"], log_path)


def holder(api):
    return lease_holder(api, "kube-scheduler", "default")


def test_only_the_leader_schedules_and_a_standby_takes_over(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    procs = []
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            api.create(NODES, node("n1", cpu="8"))
            procs.append(start_scheduler(kubeconfig, "first", tmp_path / "first.log"))
            wait_for(lambda: holder(api) == "first")
            procs.append(start_scheduler(kubeconfig, "second", tmp_path / "second.log"))
            api.create(PODS, pod("before"))
            wait_for(lambda: api.get(PODS, "before")["spec"].get("nodeName") == "n1")
            assert holder(api) == "first"

            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            killed_at = time.monotonic()
            api.create(PODS, pod("after"))
            wait_for(lambda: api.get(PODS, "after")["spec"].get("nodeName") == "n1")
            assert time.monotonic() - killed_at < 20
            lease = api.get(LEASES, "kube-scheduler", "default")["spec"]
            assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("second", 1)
    finally:
        stop_all(procs)


def test_a_terminated_leader_releases_the_lease(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    procs = []
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            procs.append(start_scheduler(kubeconfig, "first", tmp_path / "first.log"))
            wait_for(lambda: holder(api) == "first")
            procs[0].terminate()
            assert procs[0].wait(10) == 0
            assert holder(api) == ""
    finally:
        stop_all(procs)
