"""Conversion between the served versions of a custom resource.

CRDs here have the conversion strategy None, as in Kubernetes: objects are stored in the
storage version and every other served version sees the same object with only its
apiVersion rewritten. Built-in resources have one version and never convert.
"""

from __future__ import annotations

from api.kinds import ResourceInfo


def converts(info: ResourceInfo) -> bool:
    """True when objects served as ``info`` are stored under another version."""
    return info.custom is not None and info.version != info.custom.storage_version


def stored_api_version(info: ResourceInfo) -> str:
    return f"{info.group}/{info.custom.storage_version}" if converts(info) else info.api_version


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
