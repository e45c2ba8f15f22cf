"""python -m pkube.controllers --kubeconfig F [--leader-elect] [--controllers replicaset,deployment,...]"""

from __future__ import annotations

import argparse
import sys

from pkube.client.component import add_component_flags, run_component
from pkube.client.metrics import WorkqueueMetrics, new_registry
from pkube.controllers.manager import ControllerManager, choose


# kube-controller-manager's plain-HTTP port of old (its HTTPS one, 10257, is not served)
METRICS_PORT = 10252


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pkube.controllers", description="pkube controller-manager")
    add_component_flags(p, lease_name="kube-controller-manager", metrics_port=METRICS_PORT)
    p.add_argument("--controllers", default="*",
                   help="comma-separated controller names (default: all available)")
    p.add_argument("--resync-period", type=float, default=0.0, help="informer resync, seconds (0: never)")
    p.add_argument("--replicaset-burst", type=int, default=500, help="pod creates per ReplicaSet sync")
    for flag, kind, what in OPTION_FLAGS:
        p.add_argument(flag, type=kind, default=None, help=what)
    return p.parse_args(argv)


# Settings of single controllers, given to them as ctx.options[<flag name with underscores>].
OPTION_FLAGS = (
    ("--pod-eviction-timeout", float, "node lifecycle: seconds before pods of an unreachable node go"),
    ("--node-monitor-grace-period", float, "node lifecycle: seconds without a Lease renewal before NotReady"),
    ("--node-monitor-period", float, "node lifecycle: seconds between node checks"),
    ("--cluster-cidr", str, "node IPAM: the pod network (default 10.244.0.0/16)"),
    ("--node-cidr-mask-size", int, "node IPAM: prefix length of each node's podCIDR (default 24)"),
    ("--horizontal-pod-autoscaler-sync-period", float, "HPA: seconds between two syncs of each autoscaler (default 15)"),
    ("--root-ca-file", str, "root CA publisher: the CA put into every namespace's ConfigMap kube-root-ca.crt"),
    ("--cluster-signing-cert-file", str, "CSR signer: the cluster CA's certificate"),
    ("--cluster-signing-key-file", str, "CSR signer: the cluster CA's private key"),
    ("--terminated-pod-gc-threshold", int, "pod GC: terminated pods kept before the oldest go (default 12500; 0: off)"),
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


def main(argv=None) -> int:
    args = parse_args(argv)
    names = controller_names(args.controllers)
    try:
        choose(names)                       # unknown names fail before connecting
    except ValueError as err:
        print(f"controller-manager: {err}", file=sys.stderr)
        return 2

    registry = new_registry()
    workqueues = WorkqueueMetrics(registry)

    def make_run(client):
        return ControllerManager(client, names, resync_period=args.resync_period, workqueue_metrics=workqueues,
                                 **controller_options(args)).run

    return run_component("controller-manager", args, make_run, registry)


if __name__ == "__main__":
    sys.exit(main())
