"""Conversion between the served versions of a custom resource.

CRDs here have the conversion strategy None, as in Kubernetes: objects are stored in the
storage version and every other served version sees the same object with only its
apiVersion rewritten. Built-in resources have one version and never convert.
"""

from __future__ import annotations

from api.kinds import ResourceInfo


def converts(info: ResourceInfo) -> bool:
    """True when objects served as ``info`` may be stored under another version: ``info`` is
    not the storage version, or an earlier storage version may still hold objects."""
    custom = info.custom
    return custom is not None and (info.version != custom.storage_version
                                   or set(custom.stored_versions) - {custom.storage_version} != set())


def stored_api_version(info: ResourceInfo) -> str:
    return f"{info.group}/{info.custom.storage_version}" if info.custom is not None else info.api_version


def to_served(info: ResourceInfo, obj: dict) -> dict:
    """A stored object as ``info``'s version shows it (the same dict when nothing changes)."""
    if converts(info) and isinstance(obj, dict) and obj.get("apiVersion") != info.api_version:
        return {**obj, "apiVersion": info.api_version}
    return obj


def to_stored(info: ResourceInfo, obj: dict) -> dict:
    """An object written as ``info``'s version, as it is stored."""
    if converts(info) and isinstance(obj, dict):
        return {**obj, "apiVersion": stored_api_version(info)}
    return obj
