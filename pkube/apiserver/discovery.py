"""Discovery documents: /version, /api, /api/v1, /apis, /apis/{group}/{version}.

Pure functions of the kinds registry; the app serves them as JSON. /api and /apis also come
aggregated (apidiscovery.k8s.io/v2, Kubernetes 1.30's default): one APIGroupDiscoveryList
with every version's resources, for a client whose Accept asks for it (kubectl, client-go),
which then needs 2 requests to discover the API instead of one per group version.
"""

from __future__ import annotations

import platform
from typing import Optional

from pkube.api.kinds import Registry, ResourceInfo, version_priority

GIT_VERSION = "v1.32.0-pkube"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
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


def wants_aggregated(accept: str) -> bool:
    """Whether an Accept header offers apidiscovery.k8s.io/v2's APIGroupDiscoveryList (its
    media type parameters in any order; kubectl and client-go list it first)."""
    for media_type in accept.split(","):
        kind, *params = (part.strip() for part in media_type.split(";"))
        pairs = dict(p.split("=", 1) for p in params if "=" in p)
        if kind == "application/json" and (pairs.get("g"), pairs.get("v"), pairs.get("as")) == \
                ("apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList"):
            return True
    return False


def aggregated_list(groups: list[tuple[str, list[dict]]]) -> dict:
    """The APIGroupDiscoveryList of `groups`: (group name, its APIResourceLists most preferred
    version first), in priority order."""
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"name": name},
                       "versions": [{"version": doc["groupVersion"].rpartition("/")[2],
                                     "resources": aggregated_resources(doc), "freshness": "Current"}
                                    for doc in lists]} for name, lists in groups]}


def aggregated_resources(resource_list_doc: dict) -> list[dict]:
    """An APIResourceList's resources as APIResourceDiscovery entries, their subresources
    (``pods/status``) folded into them."""
    group, _, version = resource_list_doc["groupVersion"].rpartition("/")
    kind_of = lambda r: {"group": r.get("group", group), "version": r.get("version", version),  # noqa: E731
                         "kind": r["kind"]}
    found: dict[str, dict] = {}
    for res in resource_list_doc["resources"]:
        name, _, sub = res["name"].partition("/")
        if sub:
            found[name].setdefault("subresources", []).append(
                {"subresource": sub, "responseKind": kind_of(res), "verbs": list(res["verbs"])})
            continue
        found[name] = {"resource": name, "responseKind": kind_of(res),
                       "scope": "Namespaced" if res["namespaced"] else "Cluster",
                       "singularResource": res["singularName"], "verbs": list(res["verbs"]),
                       **{k: list(res[k]) for k in ("shortNames", "categories") if res.get(k)}}
    return list(found.values())


def aggregated_groups(registry: Registry, legacy: bool, extra: tuple[tuple[dict, dict], ...] = ()) -> dict:
    """/api's (`legacy`: the core group) or /apis's APIGroupDiscoveryList, the latter with
    `extra` groups served outside the registry ((APIGroup, APIResourceList) pairs, such as
    metrics.k8s.io)."""
    if legacy:
        return aggregated_list([("", [resource_list(registry, "", "v1")])])
    groups = [(g["name"], [resource_list(registry, g["name"], v["version"]) for v in g["versions"]])
              for g in api_group_list(registry)["groups"]]
    return aggregated_list(groups + [(g["name"], [doc]) for g, doc in extra])
