"""The pod network across nodes (pkube/proxy/podnetwork.py), on the real kernel.

Two "nodes" are network namespaces with a veth each on a bridge this test makes (their
shared segment, 10.203.0.0/24, the host at .1). Each runs the real proxy (`python -m pkube.proxy
--pod-network MODE`, entered with nsenter --net) against a real apiserver listening on the
host's bridge address, and has a pod bridge made by the runtime (BridgeNetwork, with the
kubelet's masquerade rules) with one "pod" namespace on it. Everything is removed on exit,
failed or not.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SEGMENT_GW = "10.203.0.1"
CLUSTER_CIDR = "10.244.0.0/16"


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Node:
    name: str
    netns: str
    ip: str
    cidr: str
    state: Path
    pod_netns: str = ""
    pod_ip: str = ""
    proxy: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def routes(self) -> set[str]:
        """`ip route` lines of protocol 0x70 (ours), spaces normalised."""
        out = sh("ip", "-n", self.netns, "route", "show")
        return {" ".join(line.split()) for line in out.splitlines() if " proto 112 " in f"{line} "}


class Lab:
    """The segment, the nodes, their pods and proxies; `close()` removes all of it."""

    def __init__(self, tmp: Path, api_port: int, mode: str):
        self.tmp, self.mode, self.tag = tmp, mode, secrets.token_hex(3)
        self.bridge = f"pnt{self.tag}"
        self.kubeconfig = write_kubeconfig(tmp / "kubeconfig", f"http://{SEGMENT_GW}:{api_port}")
        self.nodes: list[Node] = []
        self.netns: list[str] = []

    def make_segment(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{SEGMENT_GW}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_node(self, name: str, index: int) -> Node:
        node = Node(name, f"pnt{self.tag}-{name}", f"10.203.0.{index + 1}", f"10.244.{index}.0/24",
                    self.tmp / name)
        self._netns(node.netns)
        host_end = f"pnt{self.tag}h{index}"
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        sh("ip", "link", "set", host_end, "master", self.bridge, "up")
        inside = ["ip", "-n", node.netns]
        sh(*inside, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "link", "set", "lo", "up")
        sh(*inside, "route", "add", "default", "via", SEGMENT_GW)
        self.nodes.append(node)
        return node

    def add_pod(self, node: Node) -> None:
        """A pod namespace on the node's bridge, attached by the runtime inside the node."""
        node.pod_netns = f"pnt{self.tag}-{node.name}-pod"
        self._netns(node.pod_netns)
        script = ("import sys; from pkube.runtime.network import BridgeNetwork; "
                  "n = BridgeNetwork(sys.argv[1], bridge='pkube-pods', subnet=sys.argv[2], "
                  "nft_table='pkubelet', no_masquerade=sys.argv[3]); "
                  "print(n.attach('pod', sys.argv[4]).ip)")
        out = sh("nsenter", f"--net={node.netns_path}", sys.executable, "-c", script, str(node.state),
                 node.cidr, CLUSTER_CIDR, f"/run/netns/{node.pod_netns}")
        node.pod_ip = out.strip()

    def start_proxy(self, node: Node) -> None:
        log = self.tmp / f"proxy-{node.name}-{len(node.logs)}.log"
        node.logs.append(log)
        with open(log, "wb") as out:
            node.proxy = subprocess.Popen(
                ["nsenter", f"--net={node.netns_path}", sys.executable, "-m", "pkube.proxy",
                 "--kubeconfig", str(self.kubeconfig), "--node-name", node.name,
                 "--pod-network", self.mode, "--table", "pnt_proxy", "-v"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})

    def kill_proxy(self, node: Node, sig: int = signal.SIGKILL) -> None:
        if node.proxy is not None and node.proxy.poll() is None:
            node.proxy.send_signal(sig)
            node.proxy.wait(15)
        node.proxy = None

    def _netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.netns.append(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for n in self.nodes for p in n.logs if p.exists())

    def close(self) -> None:
        for node in self.nodes:
            try:
                self.kill_proxy(node)
            except subprocess.TimeoutExpired:
                pass
        for name in reversed(self.netns):           # their veths, bridges and tables go with them
            sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


@pytest.fixture(params=["host-gw", "vxlan"])
def lab(request, etcd, tmp_path):
    thread, api = start_apiserver(etcd, host="0.0.0.0")
    lab = Lab(tmp_path, int(api.url.rsplit(":", 1)[1]), request.param)
    try:
        lab.make_segment()
        with api.client() as http:
            lab.http = http
            yield lab
    finally:
        lab.close()
        stop_apiserver(thread)
        print(lab.logs())                                  # shown when the test failed


def publish_vtep_mac(http, name: str, mac: str) -> None:
    """What node `name`'s proxy would publish in vxlan mode (for a node with no proxy)."""
    patch = {"metadata": {"annotations": {"network.pkube.io/backend-data": json.dumps({"VNI": 1, "VtepMAC": mac})}}}
    r = http.patch(f"/api/v1/nodes/{name}", content=json.dumps(patch),
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def create_node(http, name: str, cidr: str, ip: str) -> None:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr}}
    assert http.post("/api/v1/nodes", json=body).status_code == 201
    status = {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
    r = http.patch(f"/api/v1/nodes/{name}/status", content=json.dumps(status),
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


class PeerLog:
    """A TCP server in a namespace (a pod's, or None: the host's) that records the source
    address of every connection it accepts."""

    SCRIPT = ("import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(); print('ready', flush=True)\n"
              "while True:\n c, peer = s.accept(); print(peer[0], flush=True); c.close()")

    def __init__(self, netns: str | None, port: int = 7070):
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", self.SCRIPT, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def __enter__(self) -> "PeerLog":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()

    def next_peer(self) -> str:
        return self.proc.stdout.readline().strip()


def connects(pod_netns: str, address: str, port: int = 7070) -> bool:
    """True once a TCP connection from the pod to address:port succeeds."""
    connect = f"import socket; socket.create_connection(('{address}', {port}), timeout=2).close()"
    return subprocess.run(["ip", "netns", "exec", pod_netns, sys.executable, "-c", connect],
                          capture_output=True, timeout=30).returncode == 0


def peer_seen_by_server(server: Node, client: Node, port: int = 7070) -> str:
    """Connect from `client`'s pod to `server`'s pod over TCP; the source address the server saw."""
    with PeerLog(server.pod_netns, port) as peers:
        assert connects(client.pod_netns, server.pod_ip, port)
        return peers.next_peer()


def create_service(http, name: str, endpoint: Node, port: int = 7070) -> str:
    """A ClusterIP Service on `endpoint`'s pod (its EndpointSlice written by hand: no
    controllers run here); its cluster IP."""
    ports = [{"name": "tcp", "port": 80, "protocol": "TCP", "targetPort": port}]
    r = http.post("/api/v1/namespaces/default/services",
                  json={"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": ports}})
    assert r.status_code == 201, r.text
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
              "addressType": "IPv4", "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}],
              "endpoints": [{"addresses": [endpoint.pod_ip], "conditions": {"ready": True},
                             "nodeName": endpoint.name}]}
    r = http.post("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", json=slice_)
    assert r.status_code == 201, r.text
    return http.get(f"/api/v1/namespaces/default/services/{name}").json()["spec"]["clusterIP"]


def expected_routes(lab: Lab, node: Node, others: list[tuple[str, str]]) -> set[str]:
    """The `ip route` lines `node` should have for the other nodes' (cidr, ip)."""
    if lab.mode == "host-gw":
        return {f"{cidr} via {ip} dev eth0 proto 112" for cidr, ip in others}
    return {f"{cidr} via {cidr.split('/')[0]} dev pkube-vxlan proto 112 onlink" for cidr, _ in others}


def test_pods_reach_pods_on_another_node_by_their_own_address(lab):
    a, b = lab.add_node("a", 1), lab.add_node("b", 2)
    for node in (a, b):
        create_node(lab.http, node.name, node.cidr, node.ip)
        lab.add_pod(node)
        lab.start_proxy(node)
    wait_for(lambda: a.routes() == expected_routes(lab, a, [(b.cidr, b.ip)]), timeout=30)
    wait_for(lambda: b.routes() == expected_routes(lab, b, [(a.cidr, a.ip)]), timeout=30)

    assert peer_seen_by_server(b, a) == a.pod_ip            # no NAT between pods
    assert peer_seen_by_server(a, b) == b.pod_ip

    cluster_ip = create_service(lab.http, "web", b)          # a Service whose endpoint is on the other node
    with PeerLog(b.pod_netns) as peers:
        wait_for(lambda: connects(a.pod_netns, cluster_ip, 80), timeout=30)
        assert peers.next_peer() == a.pod_ip
    with PeerLog(None, 7071) as peers:                      # outside the cluster CIDR: the node's address
        assert connects(a.pod_netns, SEGMENT_GW, 7071)
        assert peers.next_peer() == a.ip

    # a third node joins (no machine behind it: its route is what matters), then leaves
    create_node(lab.http, "c", "10.244.3.0/24", "10.203.0.4")
    if lab.mode == "vxlan":
        publish_vtep_mac(lab.http, "c", "0e:70:0a:cb:00:04")
    with_c = expected_routes(lab, a, [(b.cidr, b.ip), ("10.244.3.0/24", "10.203.0.4")])
    wait_for(lambda: a.routes() == with_c, timeout=10)
    assert lab.http.delete("/api/v1/nodes/c").status_code == 200
    wait_for(lambda: a.routes() == expected_routes(lab, a, [(b.cidr, b.ip)]), timeout=10)


def test_deleted_nodes_lose_their_routes_and_a_killed_controller_leaves_none_stale(lab):
    a, b = lab.add_node("a", 1), lab.add_node("b", 2)
    for node in (a, b):
        create_node(lab.http, node.name, node.cidr, node.ip)
        lab.start_proxy(node)
    create_node(lab.http, "c", "10.244.3.0/24", "10.203.0.4")
    if lab.mode == "vxlan":
        publish_vtep_mac(lab.http, "c", "0e:70:0a:cb:00:04")
    both = expected_routes(lab, a, [(b.cidr, b.ip), ("10.244.3.0/24", "10.203.0.4")])
    wait_for(lambda: a.routes() == both, timeout=30)

    lab.kill_proxy(a)                                      # SIGKILL: nothing is cleaned up on the way out
    assert lab.http.delete("/api/v1/nodes/c").status_code == 200
    assert a.routes() == both                              # c's route outlived its Node while a was down
    lab.start_proxy(a)
    wait_for(lambda: a.routes() == expected_routes(lab, a, [(b.cidr, b.ip)]), timeout=30)

    assert lab.http.delete("/api/v1/nodes/b").status_code == 200
    wait_for(lambda: a.routes() == set(), timeout=10)
    if lab.mode == "vxlan":
        assert sh("ip", "-n", a.netns, "neigh", "show", "dev", "pkube-vxlan").strip() == ""
        assert sh("bridge", "-n", a.netns, "fdb", "show", "dev", "pkube-vxlan").strip() == ""


@pytest.mark.parametrize("lab", ["host-gw"], indirect=True)     # a vxlan route is onlink: always accepted
def test_a_node_whose_route_cannot_be_installed_gets_an_event_and_the_others_still_route(lab):
    a, b = lab.add_node("a", 1), lab.add_node("b", 2)
    create_node(lab.http, a.name, a.cidr, a.ip)
    create_node(lab.http, b.name, b.cidr, b.ip)
    create_node(lab.http, "far", "10.244.9.0/24", "192.0.2.9")   # not on any segment a has
    lab.start_proxy(a)
    wait_for(lambda: a.routes() == expected_routes(lab, a, [(b.cidr, b.ip)]), timeout=30)

    def failure_event():
        events = lab.http.get("/api/v1/namespaces/default/events").json()["items"]
        return [e for e in events if e["reason"] == "FailedToCreateRoute" and e["involvedObject"]["name"] == "far"]
    event = wait_for(failure_event, timeout=30)[0]
    assert event["type"] == "Warning" and "10.244.9.0/24" in event["message"], event
    log = a.logs[-1].read_text()
    assert "no route to node far's pods" in log, log

