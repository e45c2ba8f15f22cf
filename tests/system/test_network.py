"""The bridge network on the real kernel: netns talking over a bridge, ports published to the
host (127.0.0.1 included), IP reuse, concurrent attaches, and nothing left behind.

Every test uses its own bridge (pkt<rand>), subnet (10.200.<rand>.0/24), nft table and netns,
and sends traffic only over loopback and its own namespaces.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkube.cluster.etcd import free_port
from pkube.runtime.network import BridgeNetwork, NetworkError, PortConflict, veth_name
from pkube.runtime.portmap import PortMapping, ipt_container_chain

pytestmark = pytest.mark.root

# Serves `count` connections (tcp) or datagrams (udp) with "<name>:<what it received>".
SERVER = r"""
import socket, sys
proto, port, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(8)
print("ready", flush=True)
for _ in range(count):
    if proto == "tcp":
        conn, peer = s.accept()
        conn.sendall(f"{name}:{conn.recv(100).decode()}:{peer[0]}".encode())
        conn.close()
    else:
        data, peer = s.recvfrom(100)
        s.sendto(f"{name}:{data.decode()}:{peer[0]}".encode(), peer)
"""

# Connects once and prints the answer.
CLIENT = r"""
import socket, sys
proto, host, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(msg.encode())
    print(s.recv(100).decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(msg.encode(), (host, port))
    print(s.recvfrom(100)[0].decode())
"""


def run(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def own_veths(net: BridgeNetwork) -> set[str]:
    """Every host-side veth name `net` could use (other engineers' tests make veths too)."""
    return {veth_name(ip) for ip in net.subnet.hosts()}


def nft_tables() -> str:
    return run("nft", "list", "tables").stdout


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.fail("network system tests need root (bridges, veths, netns, nftables)")


@pytest.fixture
def netns():
    """A factory of named network namespaces; each one is deleted afterwards. Yields paths."""
    names = []

    def make() -> str:
        name = f"pkt-{secrets.token_hex(4)}"
        run("ip", "netns", "add", name)
        names.append(name)
        return f"/var/run/netns/{name}"
    try:
        yield make
    finally:
        for name in names:
            run("ip", "netns", "del", name, check=False)


def unused_subnet() -> str:
    """A random 10.200.N.0/24 that no interface of the host uses right now."""
    used = run("ip", "-o", "-4", "addr").stdout
    while True:
        prefix = f"10.200.{secrets.randbelow(250) + 1}."
        if f" {prefix}" not in used:
            return prefix + "0/24"


def make_network(state_dir: Path, firewall: str = "auto") -> BridgeNetwork:
    tag = secrets.token_hex(3)
    return BridgeNetwork(state_dir, bridge=f"pkt{tag}", subnet=unused_subnet(),
                         nft_table=f"pkt_{tag}", firewall=firewall)


@pytest.fixture
def network(tmp_path):
    """A fresh bridge network, torn down afterwards; asserts it left nothing behind."""
    net = make_network(tmp_path / "network")
    try:
        yield net
    finally:
        net.teardown()
        assert net.bridge not in links()
        assert not own_veths(net) & links()
        assert net.firewall.table not in nft_tables()


@pytest.fixture
def servers():
    """Start SERVER in a namespace; waits until it listens. Every server is killed afterwards."""
    procs = []

    def start(netns_path: str, proto: str, port: int, name: str, count: int = 1):
        proc = subprocess.Popen(["nsenter", f"--net={netns_path}", sys.executable, "-c", SERVER,
                                 proto, str(port), name, str(count)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc
    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def host_address() -> str:
    """An address of the host itself (traffic to it stays on the host)."""
    for line in run("ip", "-o", "-4", "addr", "show", "scope", "global").stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("10.20"):
            return address
    return "127.0.0.1"


def client(netns_path: str | None, proto: str, host: str, port: int, msg: str = "hi") -> str:
    prefix = ["nsenter", f"--net={netns_path}"] if netns_path else []
    return run(*prefix, sys.executable, "-c", CLIENT, proto, host, str(port), msg).stdout.strip()


def test_two_namespaces_ping_and_talk_tcp_over_the_bridge(network, netns, servers):
    a, b = netns(), netns()
    ep_a = network.attach("sandbox-a", a)
    ep_b = network.attach("sandbox-b", b)
    assert ep_a.ip != ep_b.ip
    assert ep_a.gateway == ep_b.gateway == str(network.gateway)
    assert run("nsenter", f"--net={a}", "busybox", "ping", "-c", "1", "-W", "5", ep_b.ip).returncode == 0
    servers(b, "tcp", 5000, "b")
    assert client(a, "tcp", ep_b.ip, 5000, "hello") == f"b:hello:{ep_a.ip}"
    inside = run("nsenter", f"--net={a}", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"{ep_a.ip}/24" in inside
    assert f"default via {network.gateway}" in run("nsenter", f"--net={a}", "ip", "route").stdout


def test_published_port_reaches_the_namespace_from_localhost_and_the_bridge(network, netns, servers):
    a, b = netns(), netns()
    ep_a = network.attach("web", a)
    network.attach("other", b)
    tcp_port, udp_port = free_port(), free_port()
    network.publish("web", ep_a.ip, [PortMapping(tcp_port, 80), PortMapping(udp_port, 53, "udp")])
    servers(a, "tcp", 80, "web", count=4)
    servers(a, "udp", 53, "dns")
    assert client(None, "tcp", "127.0.0.1", tcp_port).startswith("web:hi:")
    assert client(None, "udp", "127.0.0.1", udp_port).startswith("dns:hi:")
    assert client(None, "tcp", host_address(), tcp_port).startswith("web:hi:")
    # another container through the gateway's address, and the container to itself (hairpin)
    assert client(b, "tcp", str(network.gateway), tcp_port).startswith("web:hi:")
    assert client(a, "tcp", str(network.gateway), tcp_port).startswith("web:hi:")
    assert network.published("web") == [PortMapping(tcp_port, 80), PortMapping(udp_port, 53, "udp")]


def test_unpublish_removes_exactly_that_containers_ports(network, netns, servers):
    a, b = netns(), netns()
    ep_a, ep_b = network.attach("a", a), network.attach("b", b)
    port_a, port_b = free_port(), free_port()
    network.publish("a", ep_a.ip, [PortMapping(port_a, 80)])
    network.publish("b", ep_b.ip, [PortMapping(port_b, 80, host_ip="127.0.0.1")])
    servers(b, "tcp", 80, "b")
    network.unpublish("a")
    network.unpublish("a")
    with pytest.raises(subprocess.CalledProcessError):
        client(None, "tcp", "127.0.0.1", port_a)
    assert client(None, "tcp", "127.0.0.1", port_b).startswith("b:hi:")
    assert network.published("a") == []


def test_detach_frees_the_address_and_the_veth(network, netns):
    a = netns()
    first = network.attach("one", a)
    assert first.host_ifname in links()
    assert network.attach("one", a) == first  # attaching again is a no-op
    network.detach("one")
    network.detach("one")
    assert first.host_ifname not in links()
    assert "one" not in network.endpoints()
    again = network.attach("two", netns())
    assert again.ip == first.ip


def test_a_leftover_veth_keeps_its_address(network, netns):
    first = network.attach("one", netns())
    network.ipam.release("one")  # state lost, but the veth is still live
    second = network.attach("two", netns())
    assert second.ip != first.ip
    assert first.host_ifname in links()


def test_teardown_removes_a_veth_whose_state_was_lost(network, netns):
    lost = network.attach("lost", netns())
    network.ipam.release("lost")  # its namespace lives on, so its veth does too
    network.teardown()
    assert lost.host_ifname not in links()


def test_attach_to_a_missing_namespace_leaves_nothing(network):
    with pytest.raises(NetworkError, match="does not exist"):
        network.attach("ghost", "/var/run/netns/pkt-no-such-ns")
    assert network.endpoints() == {}
    assert not own_veths(network) & links()


def _attach_in_child(args):
    state_dir, bridge, subnet, table, paths, prefix = args
    net = BridgeNetwork(Path(state_dir), bridge=bridge, subnet=subnet, nft_table=table)
    return [net.attach(f"{prefix}-{i}", path).ip for i, path in enumerate(paths)]


def test_concurrent_attaches_from_two_processes_never_collide(network, netns):
    paths = [netns() for _ in range(8)]
    network.ensure()
    jobs = [(str(network.state_dir), network.bridge, str(network.subnet), network.firewall.table,
             paths[i::2], f"p{i}") for i in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        ips = [ip for chunk in pool.map(_attach_in_child, jobs) for ip in chunk]
    assert len(set(ips)) == 8
    assert len(network.endpoints()) == 8


def nft_table_lines() -> set[str]:
    return {line.strip() for line in nft_tables().splitlines() if line.strip()}


def test_iptables_backend_publishes_to_localhost(tmp_path, netns, servers):
    tables_before = nft_table_lines()
    net = make_network(tmp_path / "network", firewall="iptables")
    chain = f"{net.firewall.table.upper()}-PORTS"
    try:
        a = netns()
        ep = net.attach("web", a)
        port = free_port()
        net.publish("web", ep.ip, [PortMapping(port, 8080)])
        servers(a, "tcp", 8080, "web")
        assert client(None, "tcp", "127.0.0.1", port).startswith("web:hi:")
        assert chain in run("iptables", "-t", "nat", "-S").stdout
        other = net.attach("other", netns())
        net.publish("other", other.ip, [PortMapping(free_port(), 8080)])
        assert len(net.firewall.published()) == 2
        net.unpublish("web")
        assert net.firewall.published() == [ipt_container_chain(net.firewall.table, "other")]
    finally:
        net.teardown()
        for table in nft_table_lines() - tables_before:  # iptables-nft's own tables, left empty
            subprocess.run(["nft", "delete", *table.split()], capture_output=True)
    assert chain not in run("iptables", "-t", "nat", "-S").stdout
    assert net.bridge not in links()
    assert nft_table_lines() <= tables_before


def test_a_namespace_that_died_without_detach_gives_its_address_and_ports_back(network, servers):
    holder = subprocess.Popen(["unshare", "--net", "busybox", "sleep", "300"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):  # wait until unshare has made the namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.05)
        first = network.attach("dead", path)
        port = free_port()
        network.publish("dead", first.ip, [PortMapping(port, 80)])
    finally:
        holder.kill()
        holder.wait()
    for _ in range(200):  # the kernel removes the veth when the namespace is freed
        if first.host_ifname not in links():
            break
        subprocess.run(["busybox", "sleep", "0.05"])
    assert network.reclaim_stale() == ["dead"]
    assert network.published("dead") == []
    assert network.firewall.published() == []


def test_a_host_port_is_published_once(network, netns):
    ep_a, ep_b = network.attach("a", netns()), network.attach("b", netns())
    port = free_port()
    network.publish("a", ep_a.ip, [PortMapping(port, 80)])
    with pytest.raises(PortConflict, match=f"{port}/tcp is already allocated"):
        network.publish("b", ep_b.ip, [PortMapping(port, 81)])
    network.publish("b", ep_b.ip, [PortMapping(port, 53, "udp")])  # another protocol is fine
    network.publish("a", ep_a.ip, [PortMapping(port, 80)])  # republishing its own is fine
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(PortConflict, match="in use by a host process"):
            network.publish("b", ep_b.ip, [PortMapping(busy.getsockname()[1], 80)])
    assert network.published("b") == [PortMapping(port, 53, "udp")]


def test_a_failed_attach_leaves_no_veth_and_frees_the_address(network, netns):
    path = netns()
    run("nsenter", f"--net={path}", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "taken")
    with pytest.raises(NetworkError, match="attach busy"):
        network.attach("busy", path)
    assert not own_veths(network) & links()
    assert network.ipam.allocations() == {}
    assert network.attach("next", netns()).ip == str(network.gateway + 1)


def test_loopback_up_for_a_namespace_without_network(netns):
    from pkube.runtime import netlink
    path = netns()
    netlink.loopback_up(path)
    assert "UP" in run("nsenter", f"--net={path}", "ip", "-o", "link", "show", "lo").stdout.split("<")[1]
    with pytest.raises(netlink.NetlinkError, match="does not exist"):
        netlink.loopback_up("/var/run/netns/pkt-missing")


def test_a_bridge_made_again_gets_its_firewall_back(network):
    """ensure() checks the firewall only for a bridge it has not set up before (no nft run on
    every container start); a bridge deleted and made again is checked, and repaired."""
    network.ensure()
    assert network.firewall.table in nft_tables()
    subprocess.run(["nft", "delete", "table", "ip", network.firewall.table], check=True)
    subprocess.run(["ip", "link", "delete", network.bridge], check=True)
    again = BridgeNetwork(network.state_dir, bridge=network.bridge, subnet=str(network.subnet),
                          nft_table=network.firewall.table)
    again.ensure()
    assert network.bridge in links() and network.firewall.table in nft_tables()
