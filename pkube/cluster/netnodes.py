"""`pkube up --nodes N`: N-1 more nodes on this machine, kind style, each in its own network
namespace and joined with `pkube join` and a bootstrap token, exactly as a VM joins
(cluster.join): so the tests exercise what a cluster of machines does.

The layout (docs/multi-node.md):

- on the host, the bridge ``pkube-nodes`` with 10.200.0.1/24: the segment the nodes share,
  and the host node's --node-ip (so the routes between nodes' pod networks are on-link);
- node i (1..N-1): the network namespace ``pkube-node<i>`` (/run/netns), its ``eth0``
  10.200.0.<1+i>/24 (host end ``pkn<i>`` on the bridge), lo up, default route via the host;
- the nftables table ``ip pkube-nodes``: what leaves the segment by another interface is
  masqueraded (the nodes' egress), and the host forwards to and from the bridge;
- node i's `pkube join` runs under ``nsenter --net`` only: it shares the host's mount
  namespace (its mounts and cgroups are where `pkube down` looks), with its own data dir
  DIR/nodes/<name>, its own kubelet state there, and its own cgroup root
  ``kubepods-node<i>`` (cgroups are not namespaced). Its node is named <host node>-<i>.

`pkube up` supervises each join process as one of its components (restarted when it dies:
the node then starts again with the credentials it got the first time; one that exits 0,
stopped by `pkube down --data-dir DIR/nodes/<name>`, stays stopped); stopping stops
them first, and `teardown` then removes the namespaces (their interfaces, routes and tables
go with them), the bridge and the table.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pkube.cluster.components import Component, python_module, tail
from pkube.cluster.up import ClusterConfig, ClusterError, remove_pods

BRIDGE = "pkube-nodes"
SUBNET = ipaddress.IPv4Network("10.200.0.0/24")
HOST_ADDRESS = str(SUBNET[1])
NETNS_DIR = Path("/run/netns")
NFT_TABLE = "pkube-nodes"
JOIN_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class NetNode:
    """Node `index` (1..N-1) of a local multi-node cluster."""

    index: int
    name: str
    data_dir: Path

    @property
    def netns(self) -> str:
        return f"pkube-node{self.index}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def address(self) -> str:
        return str(SUBNET[1 + self.index])

    @property
    def host_ifname(self) -> str:
        return f"pkn{self.index}"

    @property
    def cgroup_root(self) -> str:
        return f"kubepods-node{self.index}"


def plan(config: ClusterConfig) -> list[NetNode]:
    """The namespaced nodes of `config` (none when --nodes is 1)."""
    return [NetNode(i, f"{config.node_name}-{i}", config.data_dir / "nodes" / f"{config.node_name}-{i}")
            for i in range(1, config.nodes)]


def nft_ruleset() -> str:
    """The table ip pkube-nodes (see the module docstring)."""
    return (f"table ip {NFT_TABLE} {{\n"
            f"  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr {SUBNET} oifname != \"{BRIDGE}\" masquerade\n  }}\n"
            f"  chain forward {{ type filter hook forward priority filter; policy accept;\n"
            f"    iifname \"{BRIDGE}\" accept\n    oifname \"{BRIDGE}\" accept\n  }}\n}}\n")


def _run(argv: list[str], what: str, check: bool = True, stdin: str = "") -> bool:
    """Run a command; ClusterError naming `what` when it fails and `check`, else False."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=stdin)
    if done.returncode != 0 and check:
        raise ClusterError(f"{what}: {(done.stderr or done.stdout).strip()}")
    return done.returncode == 0


class NetNodes:
    """The namespaced nodes of one `pkube up --nodes N`."""

    def __init__(self, config: ClusterConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.nodes = plan(config)
        self.joins: list[Component] = []

    def setup_host(self) -> None:
        """The bridge, forwarding and the table, before the host's kubelet starts (its
        --node-ip is on the bridge). Raises ClusterError when another cluster's
        namespaces are there."""
        from pkube.runtime import netlink
        taken = [n.netns for n in self.nodes if n.netns_path.exists()]
        if taken:
            raise ClusterError(f"network namespace {taken[0]} exists: another pkube up --nodes runs on this host "
                               f"(stop it with pkube down, or remove it: ip netns delete {taken[0]})")
        with _as_cluster_error():
            netlink.ensure_bridge(BRIDGE, ipaddress.IPv4Interface(f"{HOST_ADDRESS}/{SUBNET.prefixlen}"))
            netlink.write_sysctl("net.ipv4.ip_forward", "1")
        _run(["nft", "delete", "table", "ip", NFT_TABLE], "nft", check=False)
        _run(["nft", "-f", "-"], f"create the nftables table {NFT_TABLE}", stdin=nft_ruleset())

    def join_component(self, node: NetNode, token: str) -> Component:
        """Node `node`'s `pkube join`, inside its network namespace only."""
        server = f"https://{HOST_ADDRESS}:{self.config.port}"
        argv = ["nsenter", f"--net={node.netns_path}",
                *python_module("pkube.cluster", "join", server, "--token", token, "--data-dir", str(node.data_dir),
                               "--node-name", node.name, "--node-ip", node.address,
                               "--cgroup-root", node.cgroup_root, "--pod-network", self.config.pod_network)]
        return Component(f"node {node.name}", argv, self.config.log_dir / f"join-{node.name}.log",
                         final_on_success=True)

    def start(self, supervised: list[Component]) -> None:
        """Make each node's namespace, then join them all with one fresh token and wait until
        each runs its kubelet and proxy. The joins are appended to `supervised` (the cluster's
        components). Raises ClusterError."""
        if not self.nodes:
            return
        token = self.make_token()
        for node in self.nodes:
            self.log(f"adding node {node.name} ({node.address}, network namespace {node.netns})")
            add_namespace(node)
            (node.data_dir / "ready").unlink(missing_ok=True)
            join = self.join_component(node, token)
            join.start()
            self.joins.append(join)
            supervised.append(join)
        self.wait_joined()

    def make_token(self) -> str:
        """A join token for the nodes, valid an hour (as `pkube token create --ttl 1h`)."""
        import datetime
        from pkube.client.kubeconfig import load_kubeconfig
        from pkube.client.rest import ApiClient
        from pkube.cluster import tokens
        config = load_kubeconfig(str(self.config.kubeconfig_path))
        with ApiClient(config, timeout=15) as client:
            token = tokens.create(client, datetime.timedelta(seconds=TOKEN_TTL_SECONDS), "pkube up --nodes")
        return tokens.join_token(config.ca.encode(), token.token)

    def wait_joined(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Until every node's DIR/ready exists; ClusterError when a join exits or times out."""
        deadline = time.monotonic() + timeout
        waiting = list(zip(self.nodes, self.joins))
        while waiting:
            for node, join in waiting:
                if not join.alive():
                    raise ClusterError(f"{tail(join.log_path, 3)}\nnode {node.name} did not join "
                                       f"(its log: {join.log_path})")
            waiting = [(n, j) for n, j in waiting if not (n.data_dir / "ready").exists()]
            if time.monotonic() > deadline:
                raise ClusterError(f"node {waiting[0][0].name} did not join within {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> list[Component]:
        """SIGTERM every join at once (each stops its kubelet and proxy and removes its pods,
        while the caller stops the rest); the joins, which `teardown` waits for."""
        for join in self.joins:
            if join.alive():
                join.proc.terminate()
        return self.joins

    def teardown(self) -> None:
        """Once the joins have stopped (SIGKILL after STOP_TIMEOUT), remove what the nodes left
        (pods of a join that was killed), their namespaces, the bridge and the table. Best
        effort, each failure logged."""
        from pkube.runtime import netlink
        for join in self.joins:
            join.stop(STOP_TIMEOUT)
        for node in self.nodes:
            remove_namespace(node, self.log)
        _logged(self.log, f"remove the bridge {BRIDGE}", netlink.delete_link, BRIDGE)
        _run(["nft", "delete", "table", "ip", NFT_TABLE], "", check=False)


def add_namespace(node: NetNode) -> None:
    """Node `node`'s namespace, its veth on the bridge, its address and default route.
    Raises ClusterError."""
    from pkube.runtime import netlink
    from pkube.runtime.network import mac_for
    _run(["ip", "netns", "add", node.netns], f"create network namespace {node.netns}")
    address = ipaddress.IPv4Address(node.address)
    with _as_cluster_error():
        netlink.create_veth(node.host_ifname, BRIDGE, str(node.netns_path), "eth0", mac_for(address))
        netlink.configure_interface(str(node.netns_path), "eth0",
                                    ipaddress.IPv4Interface(f"{address}/{SUBNET.prefixlen}"),
                                    ipaddress.IPv4Address(HOST_ADDRESS))


@contextlib.contextmanager
def _as_cluster_error():
    """A netlink or sysctl failure as a ClusterError (its message names the operation)."""
    from pkube.runtime.netlink import NetlinkError
    try:
        yield
    except (NetlinkError, OSError) as err:
        raise ClusterError(str(err)) from err


def remove_namespace(node: NetNode, log: Callable[[str], None]) -> None:
    """After node `node`'s processes stopped: the pods they left (of a join that was killed;
    its cgroup root, its volumes' mounts), its namespace (its interfaces, routes and tables
    go along) and its veth. Best effort, each failure logged."""
    from pkube.runtime import netlink
    remove_pods(node.data_dir / "kubelet", log, node.cgroup_root, network=False)
    if node.netns_path.exists() and not _run(["ip", "netns", "delete", node.netns], "", check=False):
        log(f"could not remove the network namespace {node.netns}")
    _logged(log, f"remove the link {node.host_ifname}", netlink.delete_link, node.host_ifname)


def _logged(log: Callable[[str], None], what: str, fn, *args) -> None:
    """Best effort: a netlink failure is logged and the caller goes on."""
    from pkube.runtime.netlink import NetlinkError
    try:
        fn(*args)
    except (NetlinkError, OSError) as err:
        log(f"could not {what}: {err}")
