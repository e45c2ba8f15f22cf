"""python -m pkube.scheduler --kubeconfig F [--leader-elect] [--name default-scheduler]"""

from __future__ import annotations

import argparse
import sys

from pkube.client.component import add_component_flags, run_component
from pkube.client.metrics import new_registry
from pkube.scheduler.framework import Framework
from pkube.scheduler.scheduler import DEFAULT_EVENT_BURST, DEFAULT_EVENT_QPS, DEFAULT_SCHEDULER_NAME, Scheduler


# kube-scheduler's plain-HTTP port of old (its HTTPS one, 10259, is not served)
METRICS_PORT = 10251


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pkube.scheduler", description="pkube scheduler")
    add_component_flags(p, lease_name="kube-scheduler", metrics_port=METRICS_PORT)
    p.add_argument("--name", default=DEFAULT_SCHEDULER_NAME, help="spec.schedulerName to serve")
    p.add_argument("--bind-concurrency", type=int, default=8,
                   help="bindings in flight (8 measured best against one apiserver)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="0: adaptive, as kube-scheduler (50%% minus 1%% per 125 nodes, at least 5%%)")
    p.add_argument("--event-qps", type=float, default=DEFAULT_EVENT_QPS,
                   help="Events written per second at most; up to 1000 wait, more are dropped (0: no pacing)")
    p.add_argument("--event-burst", type=int, default=DEFAULT_EVENT_BURST, help="Events written at once at most")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    registry = new_registry()

    def make_run(client):
        framework = Framework(percentage_of_nodes_to_score=args.percentage_of_nodes_to_score)
        return Scheduler(client, args.name, framework=framework, bind_concurrency=args.bind_concurrency,
                         event_qps=args.event_qps, event_burst=args.event_burst, metrics_registry=registry).run

    return run_component("scheduler", args, make_run, registry)


if __name__ == "__main__":
    sys.exit(main())
