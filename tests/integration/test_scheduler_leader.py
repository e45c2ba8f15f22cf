"""Two `python -m scheduler --leader-elect` processes: only the Lease holder schedules, and the
standby takes over when the leader is killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from client.kubeconfig import ClientConfig
from client.resources import LEASES, NODES, PODS
from client.rest import ApiClient
from tests.integration.test_scheduler import node, pod

REPO = Path(__file__).resolve().parents[2]


def start_scheduler(kubeconfig, identity, log_path):
    args = [sys.executable, "-m", "scheduler", "--kubeconfig", str(kubeconfig), "--leader-elect",
            "--identity", identity, "--lease-namespace", "default", "--lease-duration", "2",
            "--renew-deadline", "1.5", "--retry-period", "0.25"]
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        log.close()


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
        return api.get(LEASES, "kube-scheduler", "default")["spec"].get("holderIdentity")
    except Exception:  # noqa: BLE001 - not created yet
        return None


def write_kubeconfig(path, url):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return path


def stop_all(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
