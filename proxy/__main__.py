"""python -m proxy --kubeconfig F --node-name N [--node-ip IP] [--cluster-cidr CIDR] | --cleanup"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import socket
import sys

from client.component import run_main, serve_until_signal
from proxy.nft import LibNftables, Nft, NftError
from proxy.rules import ProxyConfig
from proxy.server import ProxyServer

TABLE = "pkube-proxy"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m proxy", description="pkube Service proxy (nftables)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--node-name", default=socket.gethostname().lower(),
                   help="this node: its endpoints are the local ones (externalTrafficPolicy Local)")
    p.add_argument("--node-ip", default="", help="the node's address, logged (NodePorts answer on every local address)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="the pod network: other sources reaching a ClusterIP are masqueraded")
    p.add_argument("--table", default=TABLE, help="the nftables table (family ip) the proxy owns")
    p.add_argument("--cleanup", action="store_true", help="delete the table and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    for flag, value, kind in (("--node-ip", args.node_ip, ipaddress.IPv4Address),
                              ("--cluster-cidr", args.cluster_cidr, ipaddress.IPv4Network)):
        if value:
            try:
                kind(value)
            except ValueError:
                p.error(f"{flag} {value!r}: not an IPv4 {'network' if flag == '--cluster-cidr' else 'address'}")
    if not args.table.replace("-", "").replace("_", "").isalnum() or len(args.table) > 32:
        p.error(f"--table {args.table!r}: want letters, digits, - or _")
    return args


def cleanup(table: str) -> int:
    try:
        Nft().delete_table(table)
    except NftError as e:
        print(f"proxy: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if LibNftables.load() is None and shutil.which("nft") is None:
        print("proxy: neither libnftables.so.1 nor the nft command is installed (apt-get install nftables)",
              file=sys.stderr)
        return 1
    if args.cleanup:
        return cleanup(args.table)
    config = ProxyConfig(table=args.table, cluster_cidr=args.cluster_cidr, node_name=args.node_name)

    def make_run(client):
        import logging
        logging.getLogger("proxy").info("node %s%s: table ip %s, cluster CIDR %s", args.node_name,
                                        f" ({args.node_ip})" if args.node_ip else "", args.table, args.cluster_cidr)
        return ProxyServer(client, config).run

    args.leader_elect = False
    return run_main("proxy", args.verbose, lambda: serve_until_signal(args, make_run))


if __name__ == "__main__":
    sys.exit(main())
