"""The process shell shared by the control-plane components (scheduler, controller-manager).

A component is ``python -m NAME --kubeconfig F [--leader-elect] ...``: it builds
its work from an ``AsyncApiClient`` and runs it, under a Lease when asked to.
SIGTERM and SIGINT cancel it; a leader then releases its Lease at once so a
standby takes over without waiting for the lease to expire.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import logging
import signal
import socket
import sys
import uuid
from typing import Awaitable, Callable

from pkube.client.aio import AsyncApiClient
from pkube.client.gcpolicy import settle_after_startup
from pkube.client.mallocpolicy import map_large_blocks
from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
from pkube.client.leaderelection import LeaderElectionConfig, LeaderElector
from pkube.client.metrics import add_metrics_flag, start_metrics_server

# Builds the component's coroutine function from a connected client.
COMPONENT_VERSION = "v1.32.0"  # the Kubernetes version a component's User-Agent names
MakeRun = Callable[[AsyncApiClient], Callable[[], Awaitable[None]]]


def add_component_flags(parser: argparse.ArgumentParser, lease_name: str, metrics_port: int = 0) -> None:
    """The flags every component takes: kubeconfig, leader election, verbosity; with a
    ``metrics_port``, ``--metrics-bind-address`` (client.metrics)."""
    if metrics_port:
        add_metrics_flag(parser, metrics_port)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--leader-elect", action="store_true", help="run only while holding the Lease")
    parser.add_argument("--lease-namespace", default="kube-system")
    parser.add_argument("--lease-name", default=lease_name)
    parser.set_defaults(user_agent=f"{lease_name}/{COMPONENT_VERSION} pkube")
    parser.add_argument("--identity", default=None, help="leader election identity (default: host_uuid)")
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    parser.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    parser.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    parser.add_argument("-v", "--verbose", action="store_true")


async def serve(args: argparse.Namespace, make_run: MakeRun, registry=None) -> int:
    """Run the component until it ends or is cancelled; 1 when it lost its Lease. With a
    ``registry``, /metrics is served on ``--metrics-bind-address`` meanwhile (leader or not)."""
    config = load_kubeconfig(args.kubeconfig, args.context)
    config = dataclasses.replace(config, user_agent=getattr(args, "user_agent", config.user_agent))
    metrics = None
    if registry is not None:
        metrics = await start_metrics_server(registry, args.metrics_bind_address, args.lease_name)
    try:
        return await _serve(args, config, make_run)
    finally:
        if metrics is not None:
            await metrics.stop()


async def _serve(args: argparse.Namespace, config, make_run: MakeRun) -> int:
    async with AsyncApiClient(config) as client:
        run = make_run(client)
        if not args.leader_elect:
            await run()
            return 0
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        election = LeaderElectionConfig(args.lease_namespace, args.lease_name, identity,
                                        args.lease_duration, args.renew_deadline, args.retry_period)
        elector = LeaderElector(client, election, run)
        try:
            await elector.run()
        except asyncio.CancelledError:      # SIGTERM: hand the Lease over at once
            await elector.release()
            return 0
        logging.error("leader election lost; exiting")
        return 1


async def serve_until_signal(args: argparse.Namespace, make_run: MakeRun, registry=None) -> int:
    """``serve``, cancelled by SIGTERM or SIGINT."""
    task = asyncio.ensure_future(serve(args, make_run, registry))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0


def run_component(name: str, args: argparse.Namespace, make_run: MakeRun, registry=None) -> int:
    """A component's main: logging, the event loop, one-line errors (exit 2); /metrics of
    ``registry`` (a prometheus_client CollectorRegistry) when given."""
    return run_main(name, args.verbose, lambda: serve_until_signal(args, make_run, registry))


def run_main(name: str, verbose: bool, main: Callable[[], Awaitable[int | None]]) -> int:
    """The shell of a client process: logging, the collector's and the C allocator's policies
    (pkube/client/gcpolicy.py, pkube/client/mallocpolicy.py),
    `main()` on a new event loop, its result as the exit status (None: 0), a bad kubeconfig or
    option as one line and exit 2, ^C as 0."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settle_after_startup()
    map_large_blocks()
    try:
        return asyncio.run(main()) or 0
    except (KubeconfigError, ValueError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
