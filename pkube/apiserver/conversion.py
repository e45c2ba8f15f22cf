"""Conversion between the served versions of a custom resource.

CRDs here have the conversion strategy None, as in Kubernetes: objects are stored in the
storage version and every other served version sees the same object with only its
apiVersion rewritten. Built-in resources have one version, but for the few in BUILTIN, served
in a second version through a pair of pure functions (served <- stored, served -> stored).
"""

from __future__ import annotations

from pkube.api import autoscaling
from pkube.api.kinds import ResourceInfo

# (group, kind, served version) -> (to the served version, to the stored version)
BUILTIN = {
    ("autoscaling", "HorizontalPodAutoscaler", "v1"): (autoscaling.to_v1, autoscaling.to_v2),
}


def converts(info: ResourceInfo) -> bool:
    """True when objects served as ``info`` may be stored under another version: ``info`` is
    not the storage version, or an earlier storage version may still hold objects."""
    if _builtin(info) is not None:
        return True
    custom = info.custom
    return custom is not None and (info.version != custom.storage_version
                                   or set(custom.stored_versions) - {custom.storage_version} != set())


def stored_api_version(info: ResourceInfo) -> str:
    return f"{info.group}/{info.custom.storage_version}" if info.custom is not None else info.api_version


def to_served(info: ResourceInfo, obj: dict) -> dict:
    """A stored object as ``info``'s version shows it (the same dict when nothing changes)."""
    pair = _builtin(info)
    if pair is not None:
        return pair[0](obj) if isinstance(obj, dict) and obj.get("apiVersion") != info.api_version else obj
    if converts(info) and isinstance(obj, dict) and obj.get("apiVersion") != info.api_version:
        return {**obj, "apiVersion": info.api_version}
    return obj


def to_stored(info: ResourceInfo, obj: dict) -> dict:
    """An object written as ``info``'s version, as it is stored."""
    pair = _builtin(info)
    if pair is not None:
        return pair[1](obj) if isinstance(obj, dict) else obj
    if converts(info) and isinstance(obj, dict):
        return {**obj, "apiVersion": stored_api_version(info)}
    return obj


def _builtin(info: ResourceInfo):
    """The conversion pair of a built-in resource served in a second version, or None."""
    return BUILTIN.get((info.group, info.kind, info.version)) if info.custom is None else None
