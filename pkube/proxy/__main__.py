"""python -m pkube.proxy --kubeconfig F --node-name N [--node-ip IP] [--cluster-cidr CIDR]
                  [--proxy-mode auto|nftables|iptables] [--pod-network host-gw|vxlan|none] | --cleanup"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from typing import Optional

from pkube.client.component import run_main, serve_until_signal
from pkube.client.metrics import add_metrics_flag, new_registry
from pkube.proxy.backend import BackendError
from pkube.proxy import modes
from pkube.proxy.podroutes import HOST_GW, MODES, NONE
from pkube.proxy.rules import ProxyConfig
from pkube.proxy.dnsserver import host_upstreams
from pkube.proxy.metrics import ProxyMetrics
from pkube.proxy.server import DnsConfig, ProxyServer
from pkube.runtime.netlink import ensure_address, remove_address

TABLE = "pkube-proxy"
DNS_INTERFACE = "lo"
METRICS_PORT = 10249       # kube-proxy's


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pkube.proxy", description="pkube Service proxy (nftables, or iptables)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--node-name", default=socket.gethostname().lower(),
                   help="this node: its endpoints are the local ones (externalTrafficPolicy Local)")
    p.add_argument("--node-ip", default="",
                   help="the node's address: the vxlan tunnel's local end (default: the Node's InternalIP); "
                        "NodePorts answer on every local address")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="the pod network: other sources reaching a ClusterIP are masqueraded")
    p.add_argument("--table", default=TABLE, help="the nftables table (family ip) the proxy owns")
    p.add_argument("--proxy-mode", default=modes.AUTO, choices=modes.MODES,
                   help="the rules' backend: nftables, iptables (chains PKUBE-* in nat and filter), or auto "
                        "(nftables when it works here, iptables otherwise)")
    p.add_argument("--cluster-dns-ip", default="",
                   help=f"serve the cluster DNS on this address (made local on {DNS_INTERFACE}); "
                        "empty: no DNS")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster DNS domain")
    p.add_argument("--dns-upstream", default="",
                   help="comma-separated resolvers for names outside the cluster (default: the host's "
                        "/etc/resolv.conf); HOST or HOST:PORT")
    p.add_argument("--pod-network", default=HOST_GW, choices=MODES,
                   help="routes to the other nodes' podCIDRs (docs/pod-network.md): host-gw (via each node's "
                        "InternalIP: nodes on one segment), vxlan (a tunnel, udp/8472: nodes routed apart), "
                        "none (no routes: one node)")
    p.add_argument("--vxlan-mtu", type=int, default=1450,
                   help="MTU of the vxlan device: the nodes' MTU less 50 (default: for a 1500 network)")
    p.add_argument("--cleanup", action="store_true",
                   help="delete the nft table and the iptables PKUBE chains, the pod network's routes and vxlan device (and the "
                        "--cluster-dns-ip address on lo) and exit")
    add_metrics_flag(p, METRICS_PORT)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    for flag, value, kind in (("--node-ip", args.node_ip, ipaddress.IPv4Address),
                              ("--cluster-dns-ip", args.cluster_dns_ip, ipaddress.IPv4Address),
                              ("--cluster-cidr", args.cluster_cidr, ipaddress.IPv4Network)):
        if value:
            try:
                kind(value)
            except ValueError:
                p.error(f"{flag} {value!r}: not an IPv4 {'network' if flag == '--cluster-cidr' else 'address'}")
    try:
        args.upstreams = parse_upstreams(args.dns_upstream)
    except ValueError as e:
        p.error(f"--dns-upstream {args.dns_upstream!r}: {e}")
    if not args.table.replace("-", "").replace("_", "").isalnum() or len(args.table) > 32:
        p.error(f"--table {args.table!r}: want letters, digits, - or _")
    return args


def parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    """"1.1.1.1,10.0.0.2:5353" -> ((1.1.1.1, 53), (10.0.0.2, 5353)); ValueError when malformed."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.partition(":")
        ipaddress.IPv4Address(host)
        found.append((host, int(port) if port else 53))
    return tuple(found)


def dns_config(args: argparse.Namespace) -> Optional[DnsConfig]:
    """The DNS the proxy serves (None without --cluster-dns-ip); its address is made local
    first, a /32 on lo (OSError when that fails)."""
    if not args.cluster_dns_ip:
        return None
    ensure_address(DNS_INTERFACE, ipaddress.IPv4Interface(f"{args.cluster_dns_ip}/32"))
    upstreams = args.upstreams or tuple(host_upstreams(exclude=(args.cluster_dns_ip,)))
    return DnsConfig(args.cluster_dns_ip, args.cluster_domain.strip("."), upstreams)


def cleanup(table: str, dns_ip: str) -> int:
    """Delete both backends' rules (the nft table, the iptables PKUBE chains), the pod
    network's routes and device, and take the DNS address (when given) off lo."""
    from pkube.proxy.podnetwork import remove_pod_network
    from pkube.runtime.netlink import NetlinkError
    errors = modes.cleanup(table)
    for error in errors:
        print(f"proxy: {error}", file=sys.stderr)
    try:
        remove_pod_network()
        if dns_ip:
            remove_address(DNS_INTERFACE, ipaddress.IPv4Interface(f"{dns_ip}/32"))
    except (NetlinkError, OSError) as e:
        print(f"proxy: {e}", file=sys.stderr)
        return 1
    return 1 if errors else 0


async def run_with_pod_network(server: ProxyServer, client, args: argparse.Namespace) -> None:
    """The proxy and the pod network controller, until cancelled (or one of them fails)."""
    import asyncio
    from pkube.proxy.podnetwork import PodNetwork, PodNetworkConfig
    from pkube.proxy.routing import Routing
    routing = Routing()
    try:
        config = PodNetworkConfig(args.pod_network, args.node_name, args.node_ip or None, mtu=args.vxlan_mtu)
        network = PodNetwork(client, config, routing)
        await asyncio.gather(server.run(), network.run())
    finally:
        routing.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        return cleanup(args.table, args.cluster_dns_ip)
    try:
        mode, ipt = modes.choose(args.proxy_mode)
    except BackendError as e:
        print(f"proxy: --proxy-mode {args.proxy_mode}: {e}", file=sys.stderr)
        return 1
    for error in modes.cleanup(args.table, keep=mode):      # the other mode's rules would still DNAT
        print(f"proxy: removing the rules of the other proxy mode: {error}", file=sys.stderr)
    config = ProxyConfig(table=args.table, cluster_cidr=args.cluster_cidr, node_name=args.node_name)
    try:
        dns = dns_config(args)
    except OSError as e:
        print(f"proxy: cannot serve the cluster DNS on {args.cluster_dns_ip}: {e}", file=sys.stderr)
        return 1

    registry = new_registry()

    def make_run(client):
        import logging
        logging.getLogger("pkube.proxy").info(
            "node %s%s: %s, cluster CIDR %s", args.node_name, f" ({args.node_ip})" if args.node_ip else "",
            f"nftables table ip {args.table}" if mode == modes.NFTABLES else f"{ipt.command} chains PKUBE-*",
            args.cluster_cidr)
        backend = lambda *reads: modes.make_backend(mode, ipt, *reads)  # noqa: E731
        server = ProxyServer(client, config, dns=dns, metrics=ProxyMetrics(registry), backend=backend)
        if args.pod_network == NONE:
            return server.run
        return lambda: run_with_pod_network(server, client, args)

    args.leader_elect, args.lease_name = False, "proxy"
    return run_main("proxy", args.verbose, lambda: serve_until_signal(args, make_run, registry))


if __name__ == "__main__":
    sys.exit(main())
