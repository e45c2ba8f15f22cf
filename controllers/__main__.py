"""python -m controllers --kubeconfig F [--leader-elect] [--controllers replicaset,deployment,...]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import uuid

from client.kubeconfig import KubeconfigError, load_kubeconfig
from client.leaderelection import LeaderElectionConfig, LeaderElector
from client.rest import AsyncApiClient
from controllers.manager import ControllerManager, choose


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m controllers", description="pkube controller-manager")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--controllers", default="*",
                   help="comma-separated controller names (default: all available)")
    p.add_argument("--leader-elect", action="store_true", help="run only while holding the Lease")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--lease-name", default="kube-controller-manager")
    p.add_argument("--identity", default=None, help="leader election identity (default: host_uuid)")
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    p.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    p.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    p.add_argument("--resync-period", type=float, default=0.0, help="informer resync, seconds (0: never)")
    p.add_argument("--replicaset-burst", type=int, default=500, help="pod creates per ReplicaSet sync")
    for flag, kind, what in OPTION_FLAGS:
        p.add_argument(flag, type=kind, default=None, help=what)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


# Settings of single controllers, given to them as ctx.options[<flag name with underscores>].
OPTION_FLAGS = (
    ("--pod-eviction-timeout", float, "node lifecycle: seconds before pods of an unreachable node go"),
    ("--node-monitor-grace-period", float, "node lifecycle: seconds without a Lease renewal before NotReady"),
    ("--node-monitor-period", float, "node lifecycle: seconds between node checks"),
    ("--cluster-cidr", str, "node IPAM: the pod network (default 10.244.0.0/16)"),
    ("--node-cidr-mask-size", int, "node IPAM: prefix length of each node's podCIDR (default 24)"),
)


def controller_options(args: argparse.Namespace) -> dict:
    """ctx.options from the command line: the burst, and the OPTION_FLAGS that were given."""
    options = {"replicaset_burst": args.replicaset_burst}
    for flag, _, _ in OPTION_FLAGS:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def controller_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


async def serve(args: argparse.Namespace) -> int:
    config = load_kubeconfig(args.kubeconfig, args.context)
    options = controller_options(args)
    async with AsyncApiClient(config) as client:
        manager = ControllerManager(client, controller_names(args.controllers),
                                    resync_period=args.resync_period, **options)
        if not args.leader_elect:
            await manager.run()
            return 0
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        election = LeaderElectionConfig(args.lease_namespace, args.lease_name, identity,
                                        args.lease_duration, args.renew_deadline, args.retry_period)
        await LeaderElector(client, election, manager.run).run()
        logging.error("leader election lost; exiting")
        return 1


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        choose(controller_names(args.controllers))       # unknown names fail before connecting
        return asyncio.run(serve(args))
    except (KubeconfigError, ValueError) as err:
        print(f"controller-manager: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
