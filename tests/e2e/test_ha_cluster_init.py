"""`pkube up --cluster-init`: a control plane of one member that another machine joins as a
member with `pkube join --control-plane`, a bootstrap token and a certificate key made on the
first (`pkube token create`, `pkube certs upload`), as k3s servers join the first one. The
machines: this host, with --node-ip on a bridge, and a network namespace on that bridge, made as
`pkube up --nodes` makes its nodes. Alone, the first member's `pkube down` and `pkube up
--cluster-init` keep its objects; the joined member serves the cluster through its own local
balancer; the first member then leaves with `pkube down` (etcd's quorum shrinks first) and
the joined member, now the whole cluster, keeps every object."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pkube.cluster.etcd import free_port
from pkube.cluster.netnodes import HOST_ADDRESS, NetNode, NetNodes, add_namespace
from pkube.cluster.up import ClusterConfig, running_pid, stop_detached
from tests.e2e.conftest import LocalCluster, kubelet_host, pkube, wait_node_ready
from tests.e2e.test_ha import endpoint_addresses
from tests.e2e.test_kubelet_pods import kubectl
from tests.helpers.waiting import wait_for

FIRST = "init"


@pytest.fixture
def machine(tmp_path):
    """The second machine: a network namespace on the nodes' bridge (both made, and removed
    at the end, by cluster.netnodes, as for `pkube up --nodes 2`), under the host's kubelet slot."""
    with kubelet_host():
        net = NetNodes(ClusterConfig(data_dir=tmp_path / "machines", node_name=FIRST, nodes=2), print)
        try:
            net.setup_host()
            add_namespace(net.nodes[0])
            yield net.nodes[0]
        finally:
            net.teardown()


def member_names(data_dir) -> set[str]:
    listed = pkube("etcd", "member", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    return {line.split()[0] for line in listed.stdout.splitlines()[1:]}


def join_as_member(machine: NetNode, server: str, token: str, key: str) -> subprocess.CompletedProcess:
    """`pkube join -d --control-plane` on the second machine (inside its network namespace)."""
    return subprocess.run(["nsenter", f"--net={machine.netns_path}", sys.executable, "-m", "pkube.cluster", "join",
                           server, "--token", token, "--control-plane", "--certificate-key", key, "-d",
                           "--data-dir", str(machine.data_dir), "--node-name", machine.name,
                           "--cgroup-root", machine.cgroup_root], capture_output=True, text=True, timeout=240)


def kubectl_on(machine: NetNode, *args: str) -> subprocess.CompletedProcess:
    """The real kubectl on the second machine, with its admin kubeconfig (its own balancer)."""
    return subprocess.run(["nsenter", f"--net={machine.netns_path}", shutil.which("kubectl"),
                           "--kubeconfig", str(machine.data_dir / "admin.kubeconfig"), *args],
                          capture_output=True, text=True, timeout=60)


def test_a_machine_joins_the_first_member_and_the_cluster_outlives_it(machine, tmp_path):
    first, port = tmp_path / FIRST, free_port()
    server = f"https://{HOST_ADDRESS}:{port}"
    up_first = ("up", "-d", "--cluster-init", "--node-ip", HOST_ADDRESS, "--data-dir", str(first), "--port", str(port),
                "--node-name", FIRST, "--kubelet-port", str(free_port()))
    try:
        up = pkube(*up_first, timeout=240)
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"pkube join {server} --token TOKEN --control-plane --certificate-key KEY" in up.stdout, up.stdout
        cluster = LocalCluster(first, port)
        kubectl(cluster, "create", "configmap", "made-alone", "--from-literal=k=v")
        assert pkube("down", "--data-dir", str(first), timeout=120).returncode == 0   # alone: it keeps its data
        again = pkube(*up_first, timeout=240)
        assert again.returncode == 0, again.stderr + again.stdout
        assert f"restarting etcd member {FIRST} on its data" in (first / "pkube.log").read_text()
        assert kubectl(cluster, "get", "configmap", "made-alone", "-o", "jsonpath={.data.k}").stdout == "v"
        wait_node_ready(cluster, FIRST)
        assert member_names(first) == {FIRST}

        token = pkube("token", "create", "--data-dir", str(first), "--ttl", "10m").stdout.strip()
        key = pkube("certs", "upload", "--data-dir", str(first)).stdout.strip()
        joined = join_as_member(machine, server, token, key)
        assert joined.returncode == 0, joined.stderr + joined.stdout
        wait_node_ready(cluster, machine.name, timeout=90)
        assert member_names(first) == {FIRST, machine.name}
        wait_for(lambda: endpoint_addresses(cluster) == {HOST_ADDRESS, machine.address}, timeout=30)
        listed = kubectl_on(machine, "get", "nodes", "-o", "name")
        assert listed.returncode == 0 and f"node/{FIRST}" in listed.stdout, listed.stderr

        left = pkube("down", "--data-dir", str(first), timeout=120)
        assert left.returncode == 0, left.stderr
        assert f"member {FIRST} (" in left.stderr and "removed from etcd" in left.stderr, left.stderr
        assert member_names(machine.data_dir) == {machine.name}
        assert not (first / "etcd-member").exists()      # it left: its data went with it
        kept = kubectl_on(machine, "get", "configmap", "made-alone", "-o", "jsonpath={.data.k}")
        assert (kept.returncode, kept.stdout) == (0, "v"), kept.stderr
        alone = pkube("down", "--data-dir", str(machine.data_dir), timeout=120)
        assert alone.returncode != 0 and f"{machine.name} is etcd's last member" in alone.stderr, alone.stderr
    finally:
        pkube("down", "--data-dir", str(first), timeout=120)
        if running_pid(ClusterConfig(data_dir=machine.data_dir)) is not None:   # etcd's last member: no pkube down
            stop_detached(ClusterConfig(data_dir=machine.data_dir), timeout=120)
