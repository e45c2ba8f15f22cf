"""The proxy's rules on the real kernel: a node network namespace with a bridge and pod
namespaces on it, a real nft table programmed by the Proxier, real TCP and UDP through it.

Every test makes its own namespaces (pxn<rand> for the node, pxn<rand>-<pod> for pods) and
deletes them in `finally`: the table lives in the node namespace and goes with it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from pkube.proxy.conntrack import Conntrack
from pkube.proxy.nft import Nft
from pkube.proxy.proxier import Proxier
from pkube.proxy.rules import ProxyConfig
from tests.unit.test_proxy_rules import endpoint, endpoint_slice, service

pytestmark = pytest.mark.root

TABLE = "pkube-proxy"

# Answers every TCP connection / UDP datagram on 8080 with "<name> <peer address>".
SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(64)
    while True:
        conn, peer = s.accept(); conn.sendall(f"{name} {peer[0]}".encode()); conn.close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 8080))
    while True:
        data, peer = s.recvfrom(100); s.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
"""

# Makes `count` connections (or datagrams) and prints one answer or error name per line.
CLIENT = r"""
import socket, sys
proto, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=5)
            print(s.recv(100).decode(), flush=True)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
            s.connect((host, port)); s.send(b"hi"); print(s.recv(100).decode(), flush=True)
        s.close()
    except OSError as e:
        print(type(e).__name__, flush=True)
"""


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


class Node:
    """A node namespace: bridge br0 10.244.0.1/24, an uplink (one end of a veth pair) 172.31.0.1/24 with the
    default route, route_localnet on; pods are namespaces on the bridge."""

    def __init__(self):
        self.name = f"pxn{secrets.token_hex(3)}"
        self.namespaces = [self.name]
        self.servers: list[subprocess.Popen] = []
        self.world_services: dict[str, dict] = {}
        self.world_slices: dict[str, list[dict]] = {}

    def up(self) -> None:
        sh("ip", "netns", "add", self.name)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "br0", "type", "bridge"], ["ip", "addr", "add", "10.244.0.1/24", "dev", "br0"],
                    ["ip", "link", "set", "br0", "up"],
                    ["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"],
                    ["ip", "link", "set", "up1", "up"], ["ip", "addr", "add", "172.31.0.1/24", "dev", "up0"],
                    ["ip", "link", "set", "up0", "up"], ["ip", "route", "add", "default", "dev", "up0"],
                    ["sysctl", "-qw", "net.ipv4.ip_forward=1"], ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]):
            self.run(*cmd)

    def run(self, *argv: str, netns: str | None = None) -> str:
        return sh("ip", "netns", "exec", netns or self.name, *argv)

    def pod(self, short: str, ip: str, serve: bool = True) -> str:
        """A pod namespace `short` at `ip` on the bridge, serving 8080 unless told not to."""
        ns, host_if = f"{self.name}-{short}", f"v{short}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self.run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.run("ip", "link", "set", host_if, "master", "br0", "up")
        self.run("ip", "link", "set", host_if, "type", "bridge_slave", "hairpin", "on")   # as the runtime's veths
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "route", "add", "default", "via", "10.244.0.1"]):
            self.run(*cmd, netns=ns)
        if serve:
            server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, short],
                                      stdout=subprocess.PIPE, text=True)
            self.servers.append(server)
            assert server.stdout.readline().strip() == "ready"
        return ns

    def client(self, host: str, port: int, count: int = 1, proto: str = "tcp", netns: str | None = None) -> list[str]:
        return self.run(sys.executable, "-c", CLIENT, proto, host, str(port), str(count), netns=netns).split("\n")[:-1]

    def proxier(self) -> Proxier:
        """A proxier that has written the table (as a starting proxy does)."""
        proxier = Proxier(ProxyConfig(table=TABLE, node_name="n1"), Nft(netns=self.name), self.world_services.get,
                          lambda key: self.world_slices.get(key, []), lambda: list(self.world_services),
                          Conntrack(netns=self.name))
        proxier.sync_all()
        return proxier

    def put(self, name: str, ip: str, endpoints: list[str], **spec) -> str:
        key = f"default/{name}"
        ports = spec.pop("ports", [{"name": "http", "port": 80, "protocol": spec.pop("protocol", "TCP")}])
        self.world_services[key] = service(name, ip, ports=ports, **spec)
        slice_ports = [{"name": "http", "port": 8080, "protocol": p.get("protocol", "TCP")} for p in ports]
        self.world_slices[key] = [endpoint_slice(name, [endpoint(i) for i in endpoints], ports=slice_ports)]
        return key

    def down(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextmanager
def node_namespace():
    if os.geteuid() != 0:
        pytest.fail("the proxy's system tests need root (network namespaces, nftables)")
    node = Node()
    try:
        node.up()
        yield node
    finally:
        node.down()
    assert node.name not in sh("ip", "netns", "list")


@pytest.fixture
def node():
    with node_namespace() as n:
        yield n


def test_a_clusterip_reaches_every_endpoint_from_a_pod_and_from_the_node(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    proxier = node.proxier()
    proxier.sync([node.put("web", "10.96.0.10", ["10.244.0.2", "10.244.0.3"])])
    from_pod = node.client("10.96.0.10", 80, count=30, netns=client)
    assert {line.split()[0] for line in from_pod} == {"a", "b"}
    assert {line.split()[1] for line in from_pod} == {"10.244.0.9"}       # a pod's source is kept
    assert {line.split()[0] for line in node.client("10.96.0.10", 80, count=30)} == {"a", "b"}
    listing = node.run("nft", "list", "table", "ip", TABLE)
    assert "10.96.0.10 . tcp . 80 : goto service-default/web/tcp/http" in listing


def test_an_endpoint_change_takes_effect_and_the_last_one_gone_refuses_at_once(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    proxier = node.proxier()
    key = node.put("web", "10.96.0.10", ["10.244.0.2", "10.244.0.3"])
    proxier.sync([key])
    node.put("web", "10.96.0.10", ["10.244.0.3"])
    proxier.sync([key])
    assert {line.split()[0] for line in node.client("10.96.0.10", 80, count=20, netns=client)} == {"b"}
    node.put("web", "10.96.0.10", [])
    proxier.sync([key])
    started = time.monotonic()
    assert node.client("10.96.0.10", 80, count=3, netns=client) == ["ConnectionRefusedError"] * 3
    assert node.client("10.96.0.10", 80) == ["ConnectionRefusedError"]
    assert time.monotonic() - started < 5          # refused, not a 5 s connect timeout each
    assert "service-default/web" not in node.run("nft", "list", "table", "ip", TABLE)


def test_udp_is_balanced_and_refused_without_endpoints(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    proxier = node.proxier()
    proxier.sync([node.put("dns", "10.96.0.53", ["10.244.0.2", "10.244.0.3"], protocol="UDP")])
    answers = node.client("10.96.0.53", 80, count=30, proto="udp", netns=client)
    assert {line.split()[0] for line in answers} == {"a", "b"}
    proxier.sync([node.put("empty", "10.96.0.54", [], protocol="UDP")])
    assert node.client("10.96.0.54", 80, proto="udp", netns=client) == ["ConnectionRefusedError"]


# One UDP socket: a datagram to HOST:PORT per line read from stdin, the answer printed.
UDP_SESSION = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.connect((sys.argv[1], int(sys.argv[2])))
for _ in sys.stdin:
    s.send(b"hi")
    try:
        print(s.recv(100).decode(), flush=True)
    except OSError as e:
        print(type(e).__name__, flush=True)
"""


def test_a_udp_client_keeping_its_socket_moves_off_a_removed_endpoint(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    proxier = node.proxier()
    key = node.put("dns", "10.96.0.53", ["10.244.0.2"], protocol="UDP")
    proxier.sync([key])
    session = subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-c", UDP_SESSION, "10.96.0.53", "80"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        def ask() -> str:
            session.stdin.write("\n")
            session.stdin.flush()
            return session.stdout.readline().split()[0]
        assert ask() == "a"
        node.put("dns", "10.96.0.53", ["10.244.0.3"], protocol="UDP")      # a still runs, but is no endpoint
        proxier.sync([key])
        assert ask() == "b"               # its conntrack entry went with the endpoint
    finally:
        session.kill()
        session.wait()


def test_a_nodeport_answers_on_the_node_addresses_and_localhost(node):
    node.pod("a", "10.244.0.2")
    client = node.pod("c", "10.244.0.9", serve=False)
    node.proxier().sync([node.put("web", "10.96.0.10", ["10.244.0.2"], type="NodePort",
                                  ports=[{"name": "http", "port": 80, "nodePort": 30080}])])
    for address in ("172.31.0.1", "10.244.0.1", "127.0.0.1"):
        assert [line.split()[0] for line in node.client(address, 30080)] == ["a"], address
    assert [line.split()[0] for line in node.client("172.31.0.1", 30080, netns=client)] == ["a"]


def test_a_pod_reaches_itself_through_its_service_hairpin(node):
    node.pod("a", "10.244.0.2")
    node.proxier().sync([node.put("self", "10.96.0.20", ["10.244.0.2"])])
    answer = node.client("10.96.0.20", 80, netns=f"{node.name}-a")
    assert answer == ["a 10.244.0.1"]          # masqueraded to the bridge: the reply comes back through it


def test_session_affinity_keeps_a_client_on_one_endpoint(node):
    for short, ip in (("a", "10.244.0.2"), ("b", "10.244.0.3"), ("d", "10.244.0.4")):
        node.pod(short, ip)
    client = node.pod("c", "10.244.0.9", serve=False)
    node.proxier().sync([node.put("sticky", "10.96.0.30", ["10.244.0.2", "10.244.0.3", "10.244.0.4"],
                                  sessionAffinity="ClientIP")])
    assert len({line.split()[0] for line in node.client("10.96.0.30", 80, count=20, netns=client)}) == 1


def test_external_traffic_policy_local_with_no_local_endpoint_drops_outside_traffic(node):
    client = node.pod("c", "10.244.0.9", serve=False)
    node.pod("a", "10.244.0.2")
    key = node.put("local", "10.96.0.40", ["10.244.0.2"], type="NodePort", externalTrafficPolicy="Local",
                   ports=[{"name": "http", "port": 80, "nodePort": 30090}])
    node.world_slices[key][0]["endpoints"][0]["nodeName"] = "elsewhere"
    node.proxier().sync([key])
    listing = node.run("nft", "list", "table", "ip", TABLE)
    assert "tcp . 30090 : drop" in listing
    assert [line.split()[0] for line in node.client("10.96.0.40", 80, netns=client)] == ["a"]   # ClusterIP: all


def test_a_restarted_proxier_rebuilds_the_table_without_stale_rules(node):
    node.pod("a", "10.244.0.2")
    first = node.proxier()
    first.sync([node.put("old", "10.96.0.50", ["10.244.0.2"]), node.put("kept", "10.96.0.51", ["10.244.0.2"])])
    del node.world_services["default/old"]          # deleted while no proxy ran
    node.proxier()
    listing = node.run("nft", "list", "table", "ip", TABLE)
    assert "service-default/old" not in listing and "10.96.0.50" not in listing
    assert "service-default/kept/tcp/http" in listing
    assert [line.split()[0] for line in node.client("10.96.0.51", 80)] == ["a"]


# Runs in a private network namespace (unshared by the child itself): libnftables applies a
# script, refuses a bad one with nft's message and changes nothing, reads and deletes tables.
LIBNFTABLES = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pkube.runtime import syscalls
syscalls.unshare(syscalls.CLONE_NEWNET)
from pkube.proxy.nft import Nft, NftError
nft = Nft()
assert nft.uses_library, "libnftables.so.1 did not load"
nft.apply("add table ip t\nadd chain ip t c\n")
try:
    nft.apply("add chain ip t d\nadd rule ip t c bogus\n")
except NftError as e:
    print("refused:", str(e).splitlines()[0])
print("d kept:", "chain d" in nft.list_table("t"), "t exists:", nft.table_exists("t"))
nft.delete_table("t")
nft.delete_table("t")
print("t exists:", nft.table_exists("t"))
"""


def test_libnftables_applies_whole_transactions_or_nothing():
    repo = str(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    out = sh(sys.executable, "-c", LIBNFTABLES, repo).splitlines()
    assert out[0].startswith("refused: libnftables: Error:")
    assert out[1:] == ["d kept: False t exists: True", "t exists: False"]
