"""Discovery documents: /version, /api, /api/v1, /apis, /apis/{group}/{version}.

Pure functions of the kinds registry; the app serves them as JSON.
"""

from __future__ import annotations

import platform
from typing import Optional

from pkube.api.kinds import Registry, ResourceInfo, version_priority

GIT_VERSION = "v1.32.0-pkube"
SUBRESOURCE_KINDS = {"binding": ("", "v1", "Binding"), "scale": ("autoscaling", "v1", "Scale"),
                     "log": ("", "v1", "Pod"), "eviction": ("policy", "v1", "Eviction"),
                     "exec": ("", "v1", "PodExecOptions"), "attach": ("", "v1", "PodAttachOptions"),
                     "portforward": ("", "v1", "PodPortForwardOptions")}


def version_info() -> dict:
    return {"major": "1", "minor": "32", "gitVersion": GIT_VERSION, "gitCommit": "",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
            "platform": f"linux/{platform.machine()}"}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list(registry: Registry, extra_groups: tuple[dict, ...] = ()) -> dict:
    """The APIGroupList: the registry's groups, each with its versions most preferred first
    (Kubernetes' version priority: GA before beta before alpha, higher numbers first), then
    `extra_groups` (APIGroup documents of groups served outside the registry, such as
    metrics.k8s.io)."""
    versions: dict[str, list[str]] = {}
    for group, version in registry.group_versions():
        if group:
            versions.setdefault(group, []).append(version)
    groups = []
    for group, names in versions.items():
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in sorted(names, key=version_priority)]
        groups.append({"name": group, "versions": listed, "preferredVersion": listed[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups + list(extra_groups)}


def api_group(registry: Registry, group: str) -> Optional[dict]:
    """The APIGroup document of ``group``, or None when it is not served."""
    return next((g for g in api_group_list(registry)["groups"] if g["name"] == group), None)


def resource_list(registry: Registry, group: str, version: str) -> Optional[dict]:
    """The APIResourceList of one group/version, or None when it is not served."""
    infos = registry.in_group_version(group, version)
    if not infos:
        return None
    resources = []
    for info in infos:
        resources.append(_resource(info))
        resources.extend(_subresource(info, name, verbs) for name, verbs in info.subresources.items())
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def _resource(info: ResourceInfo) -> dict:
    doc = {"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
           "kind": info.kind, "verbs": list(info.verbs), "storageVersionHash": ""}
    if info.short_names:
        doc["shortNames"] = list(info.short_names)
    if info.categories:
        doc["categories"] = list(info.categories)
    return doc


def _subresource(info: ResourceInfo, name: str, verbs: tuple[str, ...]) -> dict:
    doc = {"name": f"{info.plural}/{name}", "singularName": "", "namespaced": info.namespaced,
           "kind": info.kind, "verbs": list(verbs)}
    if name in SUBRESOURCE_KINDS:
        group, version, kind = SUBRESOURCE_KINDS[name]
        doc["kind"] = kind
        if group:
            doc["group"], doc["version"] = group, version
    return doc
