"""The pods/binding and {deployments,replicasets}/scale subresources."""

from __future__ import annotations

from typing import Callable

from api import meta
from api.jsonvalue import deep_copy
from apiserver import errors
from apiserver.paths import Target
from apiserver.resources import ResourceStore, WriteOptions, translate


def bound(pod: dict, node: str, now: str) -> dict:
    """Pure: ``pod`` assigned to ``node`` with a PodScheduled=True condition;
    409 when it is already bound or being deleted."""
    name = meta.name_of(pod)
    spec = pod.setdefault("spec", {})
    if spec.get("nodeName"):
        raise errors.ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": '
                              f"pod {name} is already assigned to node \"{spec['nodeName']}\"",
                              {"name": name, "kind": "pods/binding"})
    if pod.get("metadata", {}).get("deletionTimestamp"):
        raise errors.ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": '
                              f"pod {name} is being deleted, cannot be assigned to a host",
                              {"name": name, "kind": "pods/binding"})
    spec["nodeName"] = node
    status = pod.setdefault("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": now})
    status["conditions"] = conditions
    return pod


async def bind(store: ResourceStore, target: Target, binding: dict) -> dict:
    """POST pods/NAME/binding; returns the Success Status (201)."""
    if binding.get("kind") not in (None, "Binding"):
        raise errors.bad_request(f"expected a Binding, got kind {binding.get('kind')!r}")
    name = (binding.get("metadata") or {}).get("name")
    if name and name != target.name:
        raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL ({target.name})")
    node = (binding.get("target") or {}).get("name") if isinstance(binding.get("target"), dict) else None
    if not node or not isinstance(node, str):
        raise errors.ApiError(422, "Invalid", f'Binding "{target.name}" is invalid: target.name: Required value',
                              {"name": target.name, "kind": "Binding", "causes": [
                                  {"reason": "FieldValueRequired", "field": "target.name",
                                   "message": "Required value"}]})
    now = meta.now_rfc3339()
    with translate(target.info, target.name):
        await store.storage.guaranteed_update(target.key, lambda pod: bound(pod, node, now))
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def scale_of(obj: dict) -> dict:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    md = obj.get("metadata", {})
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                             "creationTimestamp") if k in md},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


async def get_scale(store: ResourceStore, target: Target) -> dict:
    return scale_of(await store.get(target))


async def write_scale(store: ResourceStore, target: Target, make_scale: Callable[[dict], dict],
                      opts: WriteOptions) -> dict:
    """PUT/PATCH scale: ``make_scale(current_scale)`` returns the desired Scale."""

    def desired(current: dict) -> dict:
        scale = make_scale(scale_of(current))
        replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.ApiError(422, "Invalid", f'Scale "{target.name}" is invalid: spec.replicas: '
                                  f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                                  {"name": target.name, "kind": "Scale", "causes": [
                                      {"reason": "FieldValueInvalid", "field": "spec.replicas",
                                       "message": "Invalid value: must be greater than or equal to 0"}]})
        new = deep_copy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            new["metadata"]["resourceVersion"] = rv
        return new

    result = await store.write(target, desired, opts)
    return scale_of(result.object)
