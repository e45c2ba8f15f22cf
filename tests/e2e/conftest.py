"""A whole local cluster started with `pkube up -d` in a temp data dir."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkube.cluster.etcd import free_port


@dataclass
class LocalCluster:
    data_dir: Path
    port: int

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The cluster CA's certificate (what verifies the apiserver and the kubelet)."""
        return self.data_dir / "pki" / "ca.crt"

    def http(self, timeout: float = 10, kubeconfig: Path | None = None):
        """An httpx.Client speaking to the apiserver as the admin kubeconfig (or `kubeconfig`)
        does (its CA, client certificate or token): tests use this, never a bare URL, so they
        keep working when the cluster's transport or credentials change."""
        import httpx

        from pkube.client.kubeconfig import load_kubeconfig
        from pkube.client.rest import ssl_context

        config = load_kubeconfig(str(kubeconfig or self.kubeconfig))
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        verify = ssl_context(config) if config.server.startswith("https:") else True
        return httpx.Client(base_url=config.server, verify=verify, headers=headers, timeout=timeout)


def pkube(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run the pkube CLI; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "pkube.cluster", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_cluster(data_dir: Path, port: int, kubelet: bool = False, *extra: str) -> LocalCluster:
    """`pkube up -d` (with the flags `extra`); without a kubelet unless asked (one host holds
    one kubelet at a time: the tests that run pods share the `node_cluster` fixture)."""
    flags = ["--node-name", "e2e-node", "--kubelet-port", str(free_port())] if kubelet else ["--no-kubelet"]
    result = pkube("up", "-d", "--data-dir", str(data_dir), "--port", str(port), *flags, *extra)
    assert result.returncode == 0, result.stderr + result.stdout
    return LocalCluster(data_dir, port)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A detached cluster for the module; always brought down."""
    data_dir = tmp_path_factory.mktemp("pkube")
    port = free_port()
    started = start_cluster(data_dir, port)
    try:
        yield started
    finally:
        pkube("down", "--data-dir", str(data_dir))


HPA_SYNC_SECONDS = 5
KUBELET_HOST_LOCK = Path("/run/lock/pkube-tests-kubelet.lock")
OWN_KUBELET_MODULES = ("tests.e2e.test_multinode", "tests.e2e.test_pod_network", "tests.e2e.test_ha",
                       "tests.e2e.test_ha_cluster_init")


def pytest_collection_modifyitems(items):
    """Modules that run kubelets of their own (under `kubelet_host`) go first: the session's
    `node_cluster` holds the host's one kubelet slot until the session ends, so after it
    they would wait for the slot forever."""
    items.sort(key=lambda item: getattr(item.module, "__name__", "") not in OWN_KUBELET_MODULES)


@contextlib.contextmanager
def kubelet_host():
    """Hold the host's one kubelet slot: a kubelet's bridge, cgroup root and nftables tables
    have fixed names, so test runs started side by side (by several developers on one
    machine) take turns instead of breaking each other's pods."""
    KUBELET_HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(KUBELET_HOST_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory):
    """A detached cluster with a real kubelet (node "e2e-node"), shared by every test that
    runs pods; `pkube down` at the end removes its pods, network and cgroups. Its autoscalers
    sync every HPA_SYNC_SECONDS (the default 15 s would make the autoscaling test wait)."""
    data_dir = tmp_path_factory.mktemp("pkube-node")
    with kubelet_host():
        started = start_cluster(data_dir, free_port(), True, "--kube-controller-manager-arg",
                                f"horizontal-pod-autoscaler-sync-period={HPA_SYNC_SECONDS}")
        try:
            wait_node_ready(started, "e2e-node")
            yield started
        finally:
            pkube("down", "--data-dir", str(data_dir))


@contextlib.contextmanager
def multinode_cluster(data_dir: Path, node_names: list[str], *flags: str):
    """`pkube up -d --nodes N` (N = len(node_names), the first the host's node) under the host's
    kubelet slot, every node Ready; always brought down."""
    port = free_port()
    with kubelet_host():
        try:
            done = pkube("up", "-d", "--data-dir", str(data_dir), "--port", str(port),
                         "--node-name", node_names[0], "--kubelet-port", str(free_port()),
                         "--nodes", str(len(node_names)), *flags, timeout=300)
            assert done.returncode == 0, done.stderr + done.stdout
            cluster = LocalCluster(data_dir, port)
            for name in node_names:
                wait_node_ready(cluster, name, timeout=90)
            yield cluster
        finally:
            pkube("down", "--data-dir", str(data_dir), timeout=180)


def wait_node_ready(cluster: LocalCluster, name: str, timeout: float = 60) -> None:
    """Until the Node `name` is registered and Ready (the kubelet starts after `pkube up -d` returns)."""
    from tests.helpers.waiting import wait_for

    with cluster.http(timeout=5) as http:
        def ready() -> bool:
            answer = http.get(f"/api/v1/nodes/{name}")
            conditions = answer.json().get("status", {}).get("conditions", []) if answer.status_code == 200 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        wait_for(ready, timeout)
