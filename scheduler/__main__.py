"""python -m scheduler --kubeconfig F [--leader-elect] [--name default-scheduler]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import uuid

from client.kubeconfig import KubeconfigError, load_kubeconfig
from client.leaderelection import LeaderElectionConfig, LeaderElector
from client.rest import AsyncApiClient
from scheduler.framework import Framework
from scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scheduler", description="pkube scheduler")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--name", default=DEFAULT_SCHEDULER_NAME, help="spec.schedulerName to serve")
    p.add_argument("--leader-elect", action="store_true", help="run only while holding the Lease")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--lease-name", default="kube-scheduler")
    p.add_argument("--identity", default=None, help="leader election identity (default: host_uuid)")
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    p.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    p.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    p.add_argument("--bind-concurrency", type=int, default=8,
                   help="bindings in flight (8 measured best against one apiserver)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="0: adaptive, as kube-scheduler (50%% minus 1%% per 125 nodes, at least 5%%)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    config = load_kubeconfig(args.kubeconfig, args.context)
    async with AsyncApiClient(config) as client:
        framework = Framework(percentage_of_nodes_to_score=args.percentage_of_nodes_to_score)
        scheduler = Scheduler(client, args.name, framework=framework, bind_concurrency=args.bind_concurrency)
        if not args.leader_elect:
            await scheduler.run()
            return 0
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        election = LeaderElectionConfig(args.lease_namespace, args.lease_name, identity,
                                        args.lease_duration, args.renew_deadline, args.retry_period)
        elector = LeaderElector(client, election, scheduler.run)
        try:
            await elector.run()
        except asyncio.CancelledError:      # SIGTERM: hand the Lease over at once
            await elector.release()
            return 0
        logging.error("leader election lost; exiting")
        return 1


async def serve_until_sigterm(args: argparse.Namespace) -> int:
    """``serve``, cancelled by SIGTERM or SIGINT so that a leader releases its Lease."""
    task = asyncio.ensure_future(serve(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(serve_until_sigterm(args))
    except (KubeconfigError, ValueError) as err:
        print(f"scheduler: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
