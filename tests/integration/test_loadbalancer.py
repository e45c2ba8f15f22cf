"""A node's local load balancer (pkube/cluster/loadbalancer.py) in front of two real apiserver
processes on one etcd: it learns the second apiserver from the kubernetes Service's
endpoints, when the one in use is killed clients and watches carry on through the other, and
once the preferred one is back its clients move back to it."""

from __future__ import annotations

import json
import signal
import subprocess

import httpx
import pytest

from pkube.cluster.etcd import free_port
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import start_component, stop_all

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def two_apiservers(etcd, tmp_path):
    """Two apiserver processes on 127.0.0.2 and 127.0.0.3, same port (as on two machines):
    (their processes, the port, a function that starts another one on an address)."""
    port, procs = free_port(), []

    def start(address: str) -> subprocess.Popen:
        procs.append(start_component("pkube.apiserver", [
            "--etcd-servers", f"http://127.0.0.1:{etcd.client_port}", "--bind-address", address,
            "--port", str(port), "--endpoint-lease-duration", "2"], tmp_path / f"apiserver-{address}.log"))
        return procs[-1]

    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            start(address)
        for address in ("127.0.0.2", "127.0.0.3"):
            wait_for(lambda: _ready(f"http://{address}:{port}"), timeout=60)
        yield procs[:], port, start
    finally:
        stop_all(procs)


def test_clients_and_watches_fail_over_to_the_apiserver_learned_from_the_endpoints(two_apiservers, tmp_path):
    (first, _), port, _ = two_apiservers
    listen = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{listen}")
    balancer = start_component("pkube.cluster.loadbalancer", [
        "--listen", f"127.0.0.1:{listen}", "--server", f"http://127.0.0.2:{port}",
        "--kubeconfig", str(kubeconfig)], tmp_path / "lb.log")
    try:
        url = f"http://127.0.0.1:{listen}"
        wait_for(lambda: _ready(url), timeout=30)
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_for(lambda: "127.0.0.3" in (tmp_path / "lb.log").read_text(), timeout=30)
            created = http.post(CONFIGMAPS, json={"metadata": {"name": "before"}}).json()
            version = created["metadata"]["resourceVersion"]
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            # a new connection goes to the surviving apiserver
            wait_for(lambda: _ok(http, "GET", f"{CONFIGMAPS}/before"), timeout=10)
            http.post(CONFIGMAPS, json={"metadata": {"name": "after"}}).raise_for_status()
            # a watch resumes from the resourceVersion it had: no relist, nothing missed
            events = _watch(url, version)
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]
    finally:
        stop_all([balancer])


def test_clients_move_back_to_the_preferred_apiserver_once_it_is_back(two_apiservers, tmp_path):
    (first, _), port, start = two_apiservers
    listen = free_port()
    balancer = start_component("pkube.cluster.loadbalancer", [
        "--listen", f"127.0.0.1:{listen}", "--server", f"http://127.0.0.2:{port}",
        "--server", f"http://127.0.0.3:{port}"], tmp_path / "lb.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=10) as http:
            wait_for(lambda: _ok(http, "GET", CONFIGMAPS), timeout=30)
            assert _upstreams(balancer.pid, port) == {"127.0.0.2"}
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            wait_for(lambda: _ok(http, "GET", CONFIGMAPS), timeout=10)
            assert _upstreams(balancer.pid, port) == {"127.0.0.3"}
            start("127.0.0.2")
            # the connection kept alive to 127.0.0.3 is closed; the next one goes to 127.0.0.2
            wait_for(lambda: _ok(http, "GET", CONFIGMAPS) and _upstreams(balancer.pid, port) == {"127.0.0.2"},
                     timeout=60)
        assert "moving clients back from 127.0.0.3" in (tmp_path / "lb.log").read_text()
    finally:
        stop_all([balancer])


def _upstreams(pid: int, port: int) -> set[str]:
    """The addresses process ``pid`` has established TCP connections to on ``port``."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-2].rsplit(":", 1)[0] for line in out.splitlines() if f"pid={pid}," in line}


def _ok(http: httpx.Client, method: str, path: str) -> bool:
    try:
        return http.request(method, path).status_code == 200
    except httpx.HTTPError:
        return False


def _watch(url: str, version: str) -> list[dict]:
    params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "1"}
    with httpx.stream("GET", url + CONFIGMAPS, params=params, timeout=10) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line.strip()]
