"""The pods/binding and scale subresources (Deployments, ReplicaSets, custom resources)."""

from __future__ import annotations

from typing import Callable, Optional

from pkube.api import managedfields as mf
from pkube.api import meta
from pkube.api.crd import ScalePaths
from pkube.api.jsonvalue import deep_copy
from pkube.apiserver import errors
from pkube.apiserver.apply import field_path
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, WriteOptions, translate


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


def scale_of(obj: dict, paths: Optional[ScalePaths] = None) -> dict:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet, or of a custom
    resource whose CRD names its replica ``paths``."""
    md = obj.get("metadata", {})
    if paths is None:
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = selector if obj.get("kind") == "ReplicationController" else selector.get("matchLabels") or {}
        spec_replicas = (obj.get("spec") or {}).get("replicas", 0)
        status_replicas = (obj.get("status") or {}).get("replicas", 0)
        selector_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    else:
        spec_replicas = _at(obj, paths.spec_replicas) or 0
        status_replicas = _at(obj, paths.status_replicas) or 0
        selector_text = _at(obj, paths.label_selector) if paths.label_selector else ""
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                             "creationTimestamp") if k in md},
            "spec": {"replicas": spec_replicas},
            "status": {"replicas": status_replicas, "selector": selector_text or ""}}


def _steps(path: str) -> list[str]:
    """".spec.replicas" -> ["spec", "replicas"] (a CRD's simple JSON path)."""
    return [step for step in path.split(".") if step]


def _at(obj: dict, path: str):
    node = obj
    for step in _steps(path):
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def _set_at(obj: dict, path: str, value) -> None:
    steps = _steps(path)
    node = obj
    for step in steps[:-1]:
        if not isinstance(node.get(step), dict):
            node[step] = {}
        node = node[step]
    node[steps[-1]] = value


def _scale_paths(target: Target) -> Optional[ScalePaths]:
    custom = target.info.custom
    return custom.scale if custom is not None else None


async def get_scale(store: ResourceStore, target: Target) -> dict:
    return scale_of(await store.get(target), _scale_paths(target))


async def write_scale(store: ResourceStore, target: Target, make_scale: Callable[[dict], dict],
                      opts: WriteOptions) -> dict:
    """PUT/PATCH scale: ``make_scale(current_scale)`` returns the desired Scale."""
    paths = _scale_paths(target)

    def desired(current: dict) -> dict:
        return _scaled(current, make_scale(scale_of(current, paths)), target)

    result = await store.write(target, desired, opts)
    return scale_of(result.object, paths)


async def apply_scale(store: ResourceStore, target: Target, opts: WriteOptions) -> dict:
    """PATCH scale with an apply patch (``opts.apply``): the Scale applied as its manager
    with subresource "scale", who then owns the parent's replica count; returns the Scale."""
    paths = _scale_paths(target)
    replicas_path = paths.spec_replicas if paths is not None else ".spec.replicas"

    def desired(current: dict) -> dict:
        scale, entries = store.fields.apply_scale(current, scale_of(current, paths), opts.apply,
                                                  opts.field_manager, field_path(replicas_path),
                                                  target.info.api_version)
        return mf.store(_scaled(current, scale, target), entries)

    result = await store.write(target, desired, opts)
    return scale_of(result.object, paths)


def _scaled(current: dict, scale: dict, target: Target) -> dict:
    """A copy of ``current`` with the replica count of ``scale`` (and its resourceVersion as
    a precondition); 422 for a count that is not a non-negative integer."""
    paths = _scale_paths(target)
    replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.ApiError(422, "Invalid", f'Scale "{target.name}" is invalid: spec.replicas: '
                              f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                              {"name": target.name, "kind": "Scale", "causes": [
                                  {"reason": "FieldValueInvalid", "field": "spec.replicas",
                                   "message": "Invalid value: must be greater than or equal to 0"}]})
    new = deep_copy(current)
    _set_at(new, paths.spec_replicas if paths is not None else ".spec.replicas", replicas)
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv:
        new["metadata"]["resourceVersion"] = rv
    return new
