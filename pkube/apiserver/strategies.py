"""Per-kind rules of the generic store, as Kubernetes' registry strategies.

Which fields a create resets, which field selectors a kind supports, how
status and spec are kept apart, when generation moves.
"""

from __future__ import annotations

import base64
import binascii

from pkube.api import crd as crds
from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import ResourceInfo, is_crd

COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
FIELD_SELECTORS: dict[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                      "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                      "status.podIP", "status.podIPs", "status.nominatedNodeName"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion",
                        "involvedObject.resourceVersion", "involvedObject.fieldPath",
                        "reason", "reportingComponent", "source", "type"}),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "ReplicaSet": frozenset({"status.replicas"}),
}


def supported_fields(info: ResourceInfo) -> frozenset[str]:
    """Field-selector paths ``info``'s lists and watches accept."""
    if info.custom is not None:
        return COMMON_FIELDS | frozenset(info.custom.selectable_fields)
    return COMMON_FIELDS | FIELD_SELECTORS.get(info.kind, frozenset())


def field_view(info: ResourceInfo, obj: dict) -> dict:
    """The object as field selectors see it (Event 'source' is source.component)."""
    if info.builtin_kind == "Event" and isinstance(obj.get("source"), dict):
        return {**obj, "source": obj["source"].get("component", "")}
    if info.builtin_kind == "Pod":
        spec = obj.get("spec") or {}
        if isinstance(spec, dict) and "hostNetwork" in spec:
            return {**obj, "spec": {**spec, "hostNetwork": str(bool(spec["hostNetwork"])).lower()}}
    return obj


def has_status(info: ResourceInfo) -> bool:
    return "status" in info.subresources


def reset_status_for_create(info: ResourceInfo, obj: dict) -> None:
    """Drop client-sent status where Kubernetes does (in place).

    Pods start Pending; Deployments, ReplicaSets, Services and Ingresses start empty, and
    PodDisruptionBudgets with zero counts.
    Nodes and Namespaces keep theirs (kubelets register nodes with status).
    A custom resource with a status subresource starts without one; a CRD
    starts with only its storage version recorded.
    """
    if info.custom is not None:
        if has_status(info):
            obj.pop("status", None)
    elif is_crd(info):
        obj["status"] = crd_status_for_create(obj)
    elif info.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(_dict(obj.get("spec")))}
    elif info.kind == "Deployment":
        obj["status"] = {}
    elif info.kind == "ReplicaSet":
        obj["status"] = {"replicas": 0}
    elif info.kind == "DaemonSet":
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                         "numberReady": 0}
    elif info.kind == "StatefulSet":
        obj["status"] = {"replicas": 0, "availableReplicas": 0}
    elif info.kind in ("Service", "Ingress"):
        obj["status"] = {"loadBalancer": {}}
    elif info.kind in ("Job", "CronJob"):
        obj["status"] = {}
    elif info.kind == "ReplicationController":
        obj["status"] = {"replicas": 0}
    elif info.kind in ("PersistentVolume", "PersistentVolumeClaim"):
        obj["status"] = {"phase": "Pending"}
    elif info.kind == "PodDisruptionBudget":   # its zero values, as kube-apiserver writes them
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


def qos_class(spec: dict) -> str:
    """The pod's QoS class: Guaranteed, Burstable or BestEffort."""
    containers = [c for field_name in ("containers", "initContainers")
                  for c in _list(spec.get(field_name)) if isinstance(c, dict)]
    resources = [c.get("resources") for c in containers]
    resources = [r for r in resources if isinstance(r, dict)]
    if not any((r.get("requests") or r.get("limits")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = _dict(r.get("limits")), _dict(r.get("requests"))
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                return "Burstable"
    return "Guaranteed"


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def merge_main_write(info: ResourceInfo, new: dict, old: dict) -> dict:
    """A write to the main resource: keep the stored status when the kind has a
    status subresource. (Generation moves later, once defaults are applied.)"""
    if has_status(info):
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if is_crd(info):
        with_stored_version(new)
    return new


def merge_status_write(new_status_source: dict, old: dict) -> dict:
    """A write to /status: everything but status (and resourceVersion) comes from ``old``."""
    result = deep_copy(old)
    if "status" in new_status_source:
        result["status"] = new_status_source["status"]
    else:
        result.pop("status", None)
    new_meta = new_status_source.get("metadata") or {}
    if "resourceVersion" in new_meta:
        result["metadata"]["resourceVersion"] = new_meta["resourceVersion"]
    return result


def bump_generation(new: dict, old: dict) -> None:
    """generation = old + 1 when spec changed, else old (in place on ``new``)."""
    old_gen = old.get("metadata", {}).get("generation", 1)
    changed = new.get("spec") != old.get("spec")
    new.setdefault("metadata", {})["generation"] = old_gen + 1 if changed else old_gen


def crd_status_for_create(crd: dict) -> dict:
    """A new CRD's status: no names accepted yet, its storage version stored."""
    storage = crds.storage_version(crd)
    return {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": [storage] if storage else []}


def with_stored_version(crd: dict) -> dict:
    """``crd`` (in place) with its current storage version added to status.storedVersions."""
    storage = crds.storage_version(crd)
    status = crd.setdefault("status", {})
    stored = status.setdefault("storedVersions", [])
    if storage and storage not in stored:
        stored.append(storage)
    return crd


def warnings_for(info: ResourceInfo, obj: dict) -> list[str]:
    """What a valid write should still tell the client (a CRD's unenforced CEL rules)."""
    return crds.crd_warnings(obj) if is_crd(info) else []


def semantic_causes(info: ResourceInfo, obj: dict, old: dict | None = None) -> list[dict]:
    """Checks the schema validator cannot express (Secret data must be base64, a CRD's
    rules)."""
    if is_crd(info):
        return crds.crd_causes(obj, old)
    if info.kind != "Secret" or not isinstance(obj.get("data"), dict):
        return []
    causes = []
    for key, value in obj["data"].items():
        if not isinstance(value, str) or not _is_base64(value):
            causes.append({"reason": "FieldValueInvalid", "field": f"data[{key}]",
                           "message": "Invalid value: illegal base64 data"})
    return causes


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
