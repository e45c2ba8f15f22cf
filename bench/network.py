"""Service proxy programming (issue 10): the proxy's nftables table in a throwaway network namespace.

Prints, measured in one run on this machine (the first line times a fixed pure-Python loop,
the second gives the load average: both move these figures):
  1. 1,000 Services with 10 ready endpoints each programmed from nothing: the proxier's
     `sync_all` (rule generation and one `nft -f` transaction), best and median of R runs,
     each on an empty namespace (the table deleted first) — goal <= 1 s;
  2. one endpoint change with those 1,000 in place: the proxier's `sync` of the one Service
     (diff, one small transaction), p50 / p90 / max over C changes — goal <= 20 ms;
  2b. the same two figures with the iptables backend (pkube/proxy/iptproxier.py: one
     iptables-restore --noflush input each), for each variant installed: iptables-nft and
     iptables-legacy, --iptables-runs full writes each;
  3. the same two figures for --affinity-services (default 100) Services with sessionAffinity
     ClientIP (per-endpoint chains and sets, kube-proxy's layout), for comparison: the kernel
     finds a set by name in a list, so this layout grows quadratically with the sets
     (1,000 x 10 of them take ~16 s here);
  4. the cluster DNS (pkube/proxy/dnsserver.py over the same 1,000 Services) on 10.96.0.10 (on lo), asked from a second network namespace behind a bridge and a veth, as a pod
     asks it: queries per second and p50/p99 latency with --dns-window questions in flight
     (bench/dnsload.py, a separate process on the same cores), with the server's answer cache
     and without it (every question parsed, resolved and encoded) — goal >= 5,000/s, p99 <= 5 ms;
  5. pod to pod over TCP (bench/podnet.py): two nodes as network namespaces on a bridge, each
     with the runtime's pod bridge and a pod network routed by pkube/proxy/podnetwork.py's code
     (host-gw, then vxlan), a client pod on node a, a server pod on a and one on b: iperf3
     throughput (one stream, --tcp-seconds, median and range of --tcp-runs, direct and via each
     server's ClusterIP programmed by the Proxier in node a — goal via the Service >= 0.9 x
     direct) and connect latency p50/p99 (connect until the accept's byte, --connects
     sequential connections; bench/tcpconnect.py).

The bench unshares its own network namespace first (gone when it exits) and drives the
Proxier directly (pkube/proxy/proxier.py) with the objects in memory: no apiserver, so these are
the proxy's own costs. Needs root and the `nft` command.

Usage (root): python bench/network.py [--services 1000] [--endpoints 10] [--runs 3] [--changes 30]
                                      [--iptables-runs 2] [--affinity-services 100] [--tcp-seconds 2]
                                      [--tcp-runs 3] [--connects 2000] [--only-proxy | --only-pods]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import percentile, python_loop_line  # noqa: E402
from bench.podnet import PodNetLab  # noqa: E402
from pkube.proxy.model import SERVICE_NAME_LABEL  # noqa: E402
from pkube.proxy.ipt import Iptables  # noqa: E402
from pkube.proxy.iptproxier import IptablesProxier, remove_all  # noqa: E402
from pkube.proxy.nft import Nft  # noqa: E402
from pkube.proxy.proxier import Proxier  # noqa: E402
from pkube.proxy.rules import ProxyConfig  # noqa: E402
from pkube.proxy.dnsnames import ClusterNames  # noqa: E402
from pkube.proxy.dnsserver import DnsServer  # noqa: E402
from pkube.runtime import netlink, syscalls  # noqa: E402

TABLE = "pkube-proxy"


def make_service(i: int, affinity: bool) -> dict:
    spec = {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return {"metadata": {"name": f"svc{i}", "namespace": "bench", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec}


def make_slice(i: int, endpoints: int, generation: int = 0) -> dict:
    first = 1 + generation % 200
    return {"metadata": {"name": f"svc{i}-x", "namespace": "bench", "labels": {SERVICE_NAME_LABEL: f"svc{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.{100 + i // 250}.{i % 250}.{first + e}"],
                           "conditions": {"ready": True}, "nodeName": "bench"} for e in range(endpoints)]}


class World:
    """Services and slices in memory, and a proxier over them: nftables, or the iptables
    backend through `iptables` (a command: iptables, iptables-legacy)."""

    def __init__(self, services: int, endpoints: int, affinity: bool, iptables: str | None = None):
        self.endpoints = endpoints
        self.services = {f"bench/svc{i}": make_service(i, affinity) for i in range(services)}
        self.slices = {f"bench/svc{i}": [make_slice(i, endpoints)] for i in range(services)}
        reads = (self.services.get, lambda key: self.slices.get(key, []), lambda: list(self.services))
        config = ProxyConfig(table=TABLE, node_name="bench")
        self.proxier = IptablesProxier(config, Iptables(iptables), *reads) if iptables else \
            Proxier(config, Nft(), *reads)

    def clear(self) -> None:
        """Remove the proxier's rules: the next sync_all starts from nothing."""
        if isinstance(self.proxier, IptablesProxier):
            remove_all(self.proxier.ipt)
        else:
            self.proxier.nft.delete_table(TABLE)


def time_full(world: World, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        world.clear()
        began = time.perf_counter()
        result = world.proxier.sync_all()
        times.append(time.perf_counter() - began)
        assert not result.failed, result
    return times


def time_changes(world: World, changes: int) -> list[float]:
    """Each change moves one endpoint of one Service to a new address (one added, one gone)."""
    times = []
    n = len(world.services)
    for c in range(1, changes + 1):
        i = (c * 37) % n
        world.slices[f"bench/svc{i}"] = [make_slice(i, world.endpoints, generation=c)]
        began = time.perf_counter()
        result = world.proxier.sync([f"bench/svc{i}"])
        times.append(time.perf_counter() - began)
        assert not result.failed, result
    return times


def report(label: str, full: list[float], changes: list[float], services: int, endpoints: int,
           goals: bool) -> None:
    print(f"{label}: {services:,} Services x {endpoints} endpoints from nothing: "
          f"best {min(full) * 1000:.0f} ms, median {statistics.median(full) * 1000:.0f} ms"
          + (" (goal <= 1000 ms)" if goals else ""))
    print(f"{label}: one endpoint change with those in place: p50 {percentile(changes, 0.5) * 1000:.1f} ms, "
          f"p90 {percentile(changes, 0.9) * 1000:.1f} ms, max {max(changes) * 1000:.1f} ms"
          + (" (goal <= 20 ms)" if goals else ""))


DNS_IP, BRIDGE, BRIDGE_IP, POD_IP = "10.96.0.10", "benchbr0", "10.250.0.1/24", "10.250.0.2/24"


def time_dns(world: World, seconds: float, window: int, cache: bool = True) -> dict:
    """The DNS figures (see the module's docstring): the server in this process, the load
    generator in its own network namespace wired to this one like a pod."""
    netlink.loopback_up("/proc/self/ns/net")
    netlink.ensure_address("lo", ipaddress.IPv4Interface(f"{DNS_IP}/32"))
    netlink.ensure_bridge(BRIDGE, ipaddress.IPv4Interface(BRIDGE_IP))
    names = [f"svc{i}.bench.svc.cluster.local" for i in range(len(world.services))]
    load = subprocess.Popen(["unshare", "--net", sys.executable, str(Path(__file__).with_name("dnsload.py")),
                             DNS_IP, str(seconds), str(window), *names],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pod_netns = f"/proc/{load.pid}/ns/net"
        wait_for_own_netns(pod_netns)
        netlink.create_veth("benchveth0", BRIDGE, pod_netns, "eth0", "02:42:0a:fa:00:02")
        netlink.configure_interface(pod_netns, "eth0", ipaddress.IPv4Interface(POD_IP),
                                    ipaddress.IPv4Interface(BRIDGE_IP).ip)
        server = DnsServer(ClusterNames("cluster.local", world.services.get, lambda key: world.slices.get(key, [])),
                           DNS_IP, cache_entries=10_000 if cache else 0)

        async def serve() -> str:
            await server.start()
            try:
                return (await asyncio.to_thread(load.communicate, "go\n", seconds + 30))[0]
            finally:
                await server.stop()
        return json.loads(asyncio.run(serve()))
    finally:
        load.kill()
        load.wait()


def wait_for_own_netns(path: str, timeout: float = 10.0) -> None:
    """Until `path` (a child's /proc/PID/ns/net) is a namespace other than ours (unshare ran)."""
    deadline = time.monotonic() + timeout
    while os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino:
        if time.monotonic() > deadline:
            raise RuntimeError("the DNS load generator did not enter its own network namespace")
        time.sleep(0.01)


def pod_figures(args: argparse.Namespace) -> None:
    """Part 5 of the module's docstring: one line per path."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pkube-bench-podnet-") as state:
        lab = PodNetLab(state)
        try:
            a, b = lab.add_node("a", 1), lab.add_node("b", 2)
            client, local, remote = lab.add_pod(a, "client"), lab.add_pod(a, "local"), lab.add_pod(b, "remote")
            services = {"10.96.200.1": local, "10.96.200.2": remote}
            lab.add_services(a, services)
            for pod in (local, remote):
                lab.serve(pod)
            for mode in ("host-gw", "vxlan"):
                lab.route(mode)
                for label, (cluster_ip, target) in (("one node", ("10.96.200.1", local)),
                                                    (f"across nodes, {mode}", ("10.96.200.2", remote))):
                    if label == "one node" and mode != "host-gw":
                        continue                      # the same path in either mode
                    print_tcp(label, *tcp_figures(lab, client, target.ip, cluster_ip, args))
        finally:
            lab.close()


def tcp_figures(lab: PodNetLab, client, direct: str, service: str, args: argparse.Namespace):
    """(direct bits/s of each run, via-Service ones, direct connect figures, via-Service ones):
    the throughput runs alternate between the two paths."""
    rates: dict[str, list[float]] = {direct: [], service: []}
    for _ in range(args.tcp_runs):
        for address in rates:
            rates[address].append(lab.throughput(client, address, args.tcp_seconds))
    return (rates[direct], rates[service],
            lab.connect_latency(client, direct, args.connects), lab.connect_latency(client, service, args.connects))


def print_tcp(label: str, direct: list[float], via: list[float], direct_conn: dict, via_conn: dict) -> None:
    """One line: median throughput (and the runs' range) of each path, their ratio, connect figures."""
    def rate(runs: list[float]) -> str:
        return f"{statistics.median(runs) / 1e9:.2f} Gbit/s ({min(runs) / 1e9:.1f}-{max(runs) / 1e9:.1f})"

    def conn(c: dict) -> str:
        lost = f", {c['errors']} failed" if c["errors"] else ""
        return f"p50 {c['p50_ms']:.3f} ms, p99 {c['p99_ms']:.3f} ms{lost}"
    ratio = statistics.median(via) / statistics.median(direct)
    print(f"pod to pod TCP, {label}: {rate(direct)} direct, {rate(via)} via ClusterIP "
          f"({ratio:.2f} x direct; goal >= 0.9); connect {conn(direct_conn)} direct, "
          f"{conn(via_conn)} via ClusterIP")


def iptables_figures(args: argparse.Namespace) -> None:
    """Part 2b: parts 1 and 2 with the iptables backend, per variant installed."""
    for command in ("iptables-nft", "iptables-legacy"):
        if not shutil.which(f"{command}-restore"):
            print(f"proxy, {command}: not installed")
            continue
        world = World(args.services, args.endpoints, False, iptables=command)
        full = time_full(world, args.iptables_runs)
        changes = time_changes(world, args.changes)
        report(f"proxy, {command}", full, changes, args.services, args.endpoints, goals=True)
        world.clear()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--changes", type=int, default=30)
    p.add_argument("--iptables-runs", type=int, default=2, help="full writes per iptables variant")
    p.add_argument("--affinity-services", type=int, default=100)
    p.add_argument("--dns-seconds", type=float, default=3.0)
    p.add_argument("--dns-window", type=int, default=8, help="DNS questions in flight")
    p.add_argument("--tcp-seconds", type=float, default=2.0, help="each iperf3 run")
    p.add_argument("--tcp-runs", type=int, default=5, help="iperf3 runs per path (median kept)")
    p.add_argument("--connects", type=int, default=2000, help="timed connections per path")
    p.add_argument("--only-pods", action="store_true", help="part 5 only (pod to pod TCP)")
    p.add_argument("--only-proxy", action="store_true", help="parts 1-3 only (programming the rules)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/network.py: needs root (a network namespace and nftables)", file=sys.stderr)
        return 2
    print(python_loop_line())
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    syscalls.unshare(syscalls.CLONE_NEWNET)         # a throwaway namespace: gone when we exit
    if args.only_pods:
        pod_figures(args)
        return 0
    for label, affinity, services in (("proxy", False, args.services),
                                      ("proxy, sessionAffinity ClientIP", True, args.affinity_services)):
        world = World(services, args.endpoints, affinity)
        full = time_full(world, args.runs)
        changes = time_changes(world, args.changes)
        report(label, full, changes, services, args.endpoints, goals=not affinity)
        if not affinity:
            iptables_figures(args)
    if args.only_proxy:
        return 0
    for label, cache in (("answers cached", True), ("no answer cache", False)):
        dns = time_dns(World(args.services, args.endpoints, False), args.dns_seconds, args.dns_window, cache)
        print(f"cluster DNS from a pod's namespace ({args.services:,} Services, {args.dns_window} in flight, "
              f"{label}): {dns['answered'] / dns['seconds']:,.0f} queries/s (goal >= 5,000), "
              f"p50 {dns['p50_ms']:.2f} ms, p99 {dns['p99_ms']:.2f} ms (goal <= 5 ms); "
              f"lost {dns['lost']}, errors {dns['errors']}")
    pod_figures(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
