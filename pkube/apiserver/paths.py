"""Resolve a request path to the resource it addresses.

``/api/v1/namespaces/ns/pods/web/status`` becomes
``Target(info=Pod, namespace="ns", name="web", subresource="status")``.
Unknown resources or malformed paths are 404 NotFound, like Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pkube.api.kinds import Registry, ResourceInfo
from pkube.apiserver import errors


@dataclass(frozen=True)
class Target:
    """What a request addresses. ``name`` None means the collection;
    ``namespace`` None means all namespaces (or a cluster-scoped kind)."""

    info: ResourceInfo
    namespace: Optional[str] = None
    name: Optional[str] = None
    subresource: Optional[str] = None

    @property
    def key(self) -> str:
        return self.info.key(self.namespace, self.name or "")

    @property
    def prefix(self) -> str:
        return self.info.key_prefix(self.namespace)


def split_group_version(path: str) -> tuple[str, str, list[str]]:
    """('', 'v1', rest) for /api/v1/..., (group, version, rest) for /apis/g/v/...; 404 otherwise."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    raise errors.page_not_found()


def resolve(registry: Registry, path: str) -> Target:
    """The Target of a resource path; 404 for anything that is not one: a Status inside a
    served group-version, Go's plain "404 page not found" outside them (kube-apiserver's)."""
    group, version, rest = split_group_version(path)
    target = _resolve_rest(registry, group, version, rest)
    if target is None:
        if not registry.in_group_version(group, version):
            raise errors.page_not_found()
        raise errors.resource_not_found(path)
    return target


def _resolve_rest(registry: Registry, group: str, version: str, rest: list[str]) -> Optional[Target]:
    if len(rest) >= 3 and rest[0] == "namespaces":
        info = registry.get(group, version, rest[2])
        if info is not None and info.namespaced:
            return _item(info, rest[1], rest[3:])
    if not rest:
        return None
    info = registry.get(group, version, rest[0])
    if info is None:
        return None
    if info.namespaced:
        return Target(info) if len(rest) == 1 else None
    return _item(info, None, rest[1:])


def _item(info: ResourceInfo, namespace: Optional[str], rest: list[str]) -> Optional[Target]:
    if not rest:
        return Target(info, namespace)
    if len(rest) == 1:
        return Target(info, namespace, rest[0])
    if len(rest) == 2 and rest[1] in info.subresources:
        return Target(info, namespace, rest[0], rest[1])
    return None
