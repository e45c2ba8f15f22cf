"""Pod-to-pod TCP figures for bench/network.py: two "nodes" (network namespaces on a bridge
in the caller's namespace), each with the runtime's pod bridge and masquerade rules and "pods"
(namespaces attached by the runtime), routed by the pod network's own code
(pkube/proxy/podnetwork.py's `apply` and `ensure_vxlan`, from Node objects held in memory), and a
ClusterIP Service programmed by the proxy's Proxier in the client's node.

Throughput is iperf3's (one TCP stream, SECONDS long, received bits/s); connect latency is
bench/tcpconnect.py's (connect until the server's accept answers one byte).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pkube.proxy import podroutes
from pkube.proxy.model import SERVICE_NAME_LABEL
from pkube.proxy.nft import Nft
from pkube.proxy.podnetwork import PodNetworkConfig, apply, ensure_vxlan
from pkube.proxy.proxier import Proxier
from pkube.proxy.routing import Routing
from pkube.proxy.rules import ProxyConfig

SEGMENT = "10.204.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
IPERF_PORT, CONNECT_PORT = 5201, 7000
TCPCONNECT = str(Path(__file__).with_name("tcpconnect.py"))


def run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@dataclass
class BenchNode:
    name: str
    netns: str
    ip: str
    cidr: str
    state: str

    def as_node(self) -> dict:
        """The Node object the pod network would read."""
        return {"metadata": {"name": self.name, "annotations": podroutes.backend_annotations(
                    podroutes.vxlan_mac(ipaddress.IPv4Address(self.ip)), 1, ipaddress.IPv4Address(self.ip))},
                "spec": {"podCIDR": self.cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": self.ip}]}}


@dataclass
class Pod:
    netns: str
    ip: str


class PodNetLab:
    """The namespaces, interfaces and processes of the figures; close() removes them."""

    def __init__(self, state_dir: str):
        self.tag = secrets.token_hex(2)
        self.state_dir = state_dir
        self.bridge = f"pnbseg{self.tag}"
        self.namespaces: list[str] = []
        self.servers: list[subprocess.Popen] = []
        self.nodes: list[BenchNode] = []
        gateway = ipaddress.IPv4Network(SEGMENT).network_address + 1
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_node(self, name: str, index: int) -> BenchNode:
        segment = ipaddress.IPv4Network(SEGMENT)
        node = BenchNode(name, self._netns(name), str(segment.network_address + 1 + index),
                         f"10.244.{index}.0/24", f"{self.state_dir}/{self.tag}-{name}")
        host_end = f"pnb{self.tag}h{index}"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        run("ip", "link", "set", host_end, "master", self.bridge, "up")
        for args in (["addr", "add", f"{node.ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                     ["link", "set", "lo", "up"]):
            run("ip", "-n", node.netns, *args)
        self.nodes.append(node)
        return node

    def add_pod(self, node: BenchNode, name: str) -> Pod:
        """A pod namespace attached to the node's bridge by the runtime, inside the node."""
        netns = self._netns(f"{node.name}-{name}")
        script = ("import sys; from pkube.runtime.network import BridgeNetwork; "
                  "n = BridgeNetwork(sys.argv[1], bridge='pkube-pods', subnet=sys.argv[2], "
                  "nft_table='pkubelet', no_masquerade=sys.argv[3]); print(n.attach(sys.argv[4], sys.argv[5]).ip)")
        out = run("nsenter", f"--net=/run/netns/{node.netns}", sys.executable, "-c", script, node.state,
                  node.cidr, CLUSTER_CIDR, name, f"/run/netns/{netns}")
        return Pod(netns, out.strip())

    def route(self, mode: str) -> None:
        """Every node's routes to the others, as its pod network controller would write them."""
        nodes = [n.as_node() for n in self.nodes]
        for node in self.nodes:
            routing = Routing(f"/run/netns/{node.netns}")
            try:
                link = None
                if mode == podroutes.VXLAN:
                    link = ensure_vxlan(routing, PodNetworkConfig(mode, node.name), ipaddress.IPv4Address(node.ip),
                                        ipaddress.IPv4Network(node.cidr))
                found, problems, _ = podroutes.peers(nodes, node.name, mode)
                failures = apply(routing, podroutes.wanted_routes(found, mode, link.index if link else None),
                                 podroutes.wanted_neighbours(found, mode), link)
                if problems or failures:
                    raise RuntimeError(f"routes of {node.name}: {problems or failures}")
            finally:
                routing.close()

    def add_services(self, node: BenchNode, endpoints: dict[str, Pod]) -> None:
        """A ClusterIP Service per {cluster IP: endpoint pod} (ports IPERF_PORT and CONNECT_PORT),
        programmed in `node`'s namespace by the proxy's Proxier, all in one table."""
        services, slices = {}, {}
        for i, (cluster_ip, pod) in enumerate(endpoints.items()):
            key = f"bench/svc{i}"
            services[key], slices[key] = self._service(f"svc{i}", cluster_ip, pod)
        proxier = Proxier(ProxyConfig(table="pnbproxy", cluster_cidr=CLUSTER_CIDR, node_name=node.name),
                          Nft(netns=node.netns), services.get, lambda key: slices.get(key, []),
                          lambda: list(services))
        result = proxier.sync_all()
        if result.failed:
            raise RuntimeError(f"proxier: {result}")

    @staticmethod
    def _service(name: str, cluster_ip: str, endpoint: Pod) -> tuple[dict, list[dict]]:
        ports = [{"name": f"p{p}", "port": p, "protocol": "TCP", "targetPort": p} for p in (IPERF_PORT, CONNECT_PORT)]
        service = {"metadata": {"name": name, "namespace": "bench"},
                   "spec": {"clusterIP": cluster_ip, "ports": ports}}
        slice_ = {"metadata": {"name": f"{name}-x", "namespace": "bench", "labels": {SERVICE_NAME_LABEL: name}},
                  "addressType": "IPv4", "ports": [{"name": p["name"], "port": p["port"], "protocol": "TCP"}
                                                   for p in ports],
                  "endpoints": [{"addresses": [endpoint.ip], "conditions": {"ready": True}}]}
        return service, [slice_]

    def serve(self, pod: Pod) -> None:
        """iperf3 and the connect server in `pod`, until close()."""
        self.servers.append(subprocess.Popen(["ip", "netns", "exec", pod.netns, "iperf3", "-s", "-p", str(IPERF_PORT)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        server = subprocess.Popen(["ip", "netns", "exec", pod.netns, sys.executable, TCPCONNECT, "serve",
                                   str(CONNECT_PORT)], stdout=subprocess.PIPE, text=True)
        self.servers.append(server)
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the connect server in {pod.netns} did not start")

    def throughput(self, client: Pod, address: str, seconds: float) -> float:
        """Bits per second of one iperf3 stream from `client` to `address`."""
        for _ in range(50):      # the iperf3 server may not listen yet
            try:
                out = run("ip", "netns", "exec", client.netns, "iperf3", "-c", address, "-p", str(IPERF_PORT),
                          "-t", str(seconds), "-J", timeout=seconds + 30)
                return json.loads(out)["end"]["sum_received"]["bits_per_second"]
            except RuntimeError as e:
                if "Connection refused" not in str(e) and "unable to connect" not in str(e):
                    raise
                subprocess.run(["sleep", "0.1"])
        raise RuntimeError(f"iperf3 to {address} never connected")

    def connect_latency(self, client: Pod, address: str, count: int) -> dict:
        out = run("ip", "netns", "exec", client.netns, sys.executable, TCPCONNECT, "connect", address,
                  str(CONNECT_PORT), str(count), timeout=count + 60)
        return json.loads(out)

    def _netns(self, name: str) -> str:
        netns = f"pnb{self.tag}-{name}"
        run("ip", "netns", "add", netns)
        self.namespaces.append(netns)
        return netns

    def close(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        for netns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
