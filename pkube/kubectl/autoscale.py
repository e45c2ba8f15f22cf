"""``pkubectl autoscale (deployment|replicaset|statefulset|replicationcontroller) NAME --max=N
[--min=N] [--cpu-percent=N] [--name=NAME]``: create a HorizontalPodAutoscaler (autoscaling/v2,
as kubectl 1.33 does) for the workload, with kubectl's messages."""

from __future__ import annotations

import json

from pkube.kubectl.errors import CliError

SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")
HPA_PATH = "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"


def check_bounds(low: int, high: int) -> None:
    """kubectl's flag checks; CliError with its message."""
    if high < 1:
        raise CliError(f"--max=MAXPODS is required and must be at least 1, max: {high}")
    if high < low:
        raise CliError(f"--max=MAXPODS must be larger or equal to --min=MINPODS, max: {high}, min: {low}")


def autoscaler(kind: str, api_version: str, target: str, name: str, low: int, high: int, cpu_percent: int) -> dict:
    """The HPA to create (pure); ``low`` -1: the server's default (1); ``cpu_percent`` -1: no
    metric (the server's default, 80% CPU)."""
    spec: dict = {"scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target}, "maxReplicas": high}
    if low >= 0:
        spec["minReplicas"] = low
    if cpu_percent >= 0:
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}]
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": spec}


def autoscale(session, target, low: int, high: int, cpu_percent: int, name: str = "") -> str:
    """Create the autoscaler of ``target`` (a kubectl.mutate.Target); returns kubectl's line.
    Raises CliError for a kind that cannot scale, ApiError from the server."""
    kind = target.resource.kind
    if kind not in SCALABLE:
        raise CliError(f"cannot autoscale a {kind}: cannot autoscale a {kind}")
    session.get_json(target.path)                         # NotFound like kubectl for a missing one
    body = autoscaler(kind, target.resource.api_version, target.name, name or target.name, low, high, cpu_percent)
    session.request("POST", HPA_PATH.format(namespace=target.namespace), body=json.dumps(body).encode(),
                    content_type="application/json")
    return f"horizontalpodautoscaler.autoscaling/{name or target.name} autoscaled"
