"""The bootstrap RBAC policy: the ClusterRoles and ClusterRoleBindings kube-apiserver makes at
start (``rbac/bootstrappolicy``), for the kinds pkube serves and the identities of its
components.

``ensure`` runs at apiserver start, like kube-apiserver's ``rbac/bootstrap-roles`` hook:
a missing object is created (annotated ``rbac.authorization.kubernetes.io/autoupdate:
"true"``); an existing one is brought up to date only while it keeps that annotation
"true" (missing rules and subjects added, nothing removed); one a user set to anything
else is left as it is.

Upstream runs each controller with its own ServiceAccount and role; pkube's controller
manager is one identity, ``system:kube-controller-manager``, whose role is the union of
what its controllers need.
"""

from __future__ import annotations

import contextlib
import logging

from pkube.api import meta
from pkube.apiserver.storage.interface import KeyExists, NotFound, Storage

log = logging.getLogger(__name__)

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
ALL = READ + WRITE
APPS, BATCH, POLICY, NETWORKING = "apps", "batch", "policy", "networking.k8s.io"


def rule(verbs, groups, resources=(), names=()) -> dict:
    doc = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        doc["resourceNames"] = list(names)
    return doc


def urls(verbs, paths) -> dict:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


# What admin, edit and view see of each group (Kubernetes' aggregated roles, flattened).
WORKLOADS_CORE = ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "replicationcontrollers",
                  "replicationcontrollers/scale", "services", "services/proxy", "endpoints",
                  "persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts", "events")
VIEW_CORE = ("pods", "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale",
             "replicationcontrollers/status", "services", "services/status", "endpoints",
             "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps", "serviceaccounts",
             "events", "limitranges", "resourcequotas", "bindings", "namespaces", "namespaces/status")
APPS_RESOURCES = ("deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                  "replicasets/status", "daemonsets", "daemonsets/status", "statefulsets", "statefulsets/scale",
                  "statefulsets/status", "controllerrevisions")
BATCH_RESOURCES = ("jobs", "jobs/status", "cronjobs", "cronjobs/status")
AUTOSCALING_RESOURCES = ("horizontalpodautoscalers", "horizontalpodautoscalers/status")
POLICY_RESOURCES = ("poddisruptionbudgets", "poddisruptionbudgets/status")
NETWORKING_RESOURCES = ("ingresses", "ingresses/status", "networkpolicies")
WRITE_APPS = tuple(r for r in APPS_RESOURCES if not r.endswith("/status"))


def view_rules() -> list[dict]:
    return [rule(READ, [""], VIEW_CORE),
            rule(READ, [APPS], APPS_RESOURCES),
            rule(READ, [BATCH], BATCH_RESOURCES),
            rule(READ, ["autoscaling"], AUTOSCALING_RESOURCES),
            rule(READ, [POLICY], POLICY_RESOURCES),
            rule(READ, [NETWORKING], NETWORKING_RESOURCES),
            rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
            rule(READ, ["metrics.k8s.io"], ["pods", "nodes"])]


def edit_rules() -> list[dict]:
    return view_rules() + [
        rule(READ + WRITE, [""], WORKLOADS_CORE),
        rule(["create"], [""], ["pods/eviction", "serviceaccounts/token"]),
        rule(["get"], [""], ["pods/log"]),
        rule(READ + WRITE, [APPS], WRITE_APPS),
        rule(READ + WRITE, [BATCH], ["jobs", "cronjobs"]),
        rule(READ + WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        rule(READ + WRITE, [POLICY], ["poddisruptionbudgets"]),
        rule(READ + WRITE, [NETWORKING], ["ingresses", "networkpolicies"]),
        rule(READ + WRITE, ["discovery.k8s.io"], ["endpointslices"]),
        rule(READ + WRITE, ["coordination.k8s.io"], ["leases"])]


def admin_rules() -> list[dict]:
    return edit_rules() + [
        rule(READ + WRITE, ["rbac.authorization.k8s.io"], ["roles", "rolebindings"]),
        rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"])]


def controller_manager_rules() -> list[dict]:
    """The union of the controllers' needs: the garbage collector and the namespace
    controller read, change and delete every kind (as upstream's roles for them allow)."""
    return [rule(READ + WRITE, ["*"], ["*"]),
            rule(["create"], [""], ["pods/eviction", "pods/binding", "serviceaccounts/token"]),
            rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
            rule(["update", "patch"], ["certificates.k8s.io"],
                 ["certificatesigningrequests/approval", "certificatesigningrequests/status"]),
            rule(["approve", "sign"], ["certificates.k8s.io"], ["signers"])]


def scheduler_rules() -> list[dict]:
    return [rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
            rule(["create"], ["coordination.k8s.io"], ["leases"]),
            rule(["get", "update", "patch"], ["coordination.k8s.io"], ["leases"], ["kube-scheduler"]),
            rule(READ, [""], ["nodes", "namespaces", "services", "replicationcontrollers",
                              "persistentvolumeclaims", "persistentvolumes"]),
            rule(READ + ("delete",), [""], ["pods"]),
            rule(["create"], [""], ["pods/binding", "bindings"]),
            rule(["patch", "update"], [""], ["pods/status"]),
            rule(["patch", "update"], [""], ["persistentvolumeclaims"]),   # volume binding: selected-node
            rule(READ, [APPS], ["replicasets", "statefulsets"]),
            rule(READ, [POLICY], ["poddisruptionbudgets"]),
            rule(READ, ["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities"]),
            rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"])]


def node_proxier_rules() -> list[dict]:
    return [rule(["list", "watch"], [""], ["services", "endpoints", "nodes"]),
            rule(["get"], [""], ["nodes"]),
            rule(["patch"], [""], ["nodes"]),         # the pod network's vxlan MAC annotation
            rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
            rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"])]


def node_rules() -> list[dict]:
    """What a kubelet may do by role (upstream's system:node, not bound by default: the Node
    authorizer grants nodes these rights, restricted to their own objects)."""
    return [rule(["create", "get", "list", "watch", "update", "patch", "delete"], [""], ["nodes"]),
            rule(["patch", "update"], [""], ["nodes/status"]),
            rule(READ + ("create", "delete"), [""], ["pods"]),
            rule(["patch", "update"], [""], ["pods/status"]),
            rule(["create"], [""], ["pods/eviction", "serviceaccounts/token"]),
            rule(["get", "list", "watch"], [""], ["services", "endpoints"]),
            rule(["get"], [""], ["secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes"]),
            rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
            rule(["get", "create", "update", "patch", "delete"], ["coordination.k8s.io"], ["leases"]),
            rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
            rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews", "localsubjectaccessreviews"])]


SELF_REVIEWS = rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"])
WHOAMI = rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"])
HEALTH_PATHS = ("/healthz", "/livez", "/readyz", "/version", "/version/")
DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/",
                   "/healthz", "/livez", "/readyz")
# kube-apiserver's system:monitoring: health checks and metrics, for monitoring agents
MONITORING_PATHS = ("/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*", "/metrics",
                    "/metrics/slis")

CLUSTER_ROLES: dict[str, list[dict]] = {
    "cluster-admin": [rule(["*"], ["*"], ["*"]), urls(["*"], ["*"])],
    "admin": admin_rules(),
    "edit": edit_rules(),
    "view": view_rules(),
    "system:discovery": [urls(["get"], DISCOVERY_PATHS)],
    "system:basic-user": [SELF_REVIEWS, WHOAMI],
    "system:public-info-viewer": [urls(["get"], HEALTH_PATHS)],
    "system:monitoring": [urls(["get"], MONITORING_PATHS)],
    "system:kube-scheduler": scheduler_rules(),
    "system:kube-controller-manager": controller_manager_rules(),
    "system:node-proxier": node_proxier_rules(),
    "system:node": node_rules(),
    "system:node-bootstrapper": [rule(["create", "get", "list", "watch"], ["certificates.k8s.io"],
                                      ["certificatesigningrequests"])],
    "system:kubelet-api-admin": [rule(["*"], [""], ["nodes/proxy", "nodes/log", "nodes/stats", "nodes/metrics",
                                                     "nodes/spec"]),
                                 rule(READ + ("proxy",), [""], ["nodes"])],
    "system:auth-delegator": [rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                              rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"])],
}


def _user(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def _group(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[dict]]] = {
    "cluster-admin": ("cluster-admin", [_group("system:masters")]),
    "system:discovery": ("system:discovery", [_group("system:authenticated")]),
    "system:basic-user": ("system:basic-user", [_group("system:authenticated")]),
    "system:public-info-viewer": ("system:public-info-viewer",
                                  [_group("system:authenticated"), _group("system:unauthenticated")]),
    "system:monitoring": ("system:monitoring", [_group("system:monitoring")]),
    "system:kube-scheduler": ("system:kube-scheduler", [_user("system:kube-scheduler")]),
    "system:kube-controller-manager": ("system:kube-controller-manager", [_user("system:kube-controller-manager")]),
    "system:node-proxier": ("system:node-proxier", [_user("system:kube-proxy")]),
    "system:node-bootstrapper": ("system:node-bootstrapper", [_group("system:bootstrappers")]),
    "system:kube-apiserver-kubelet-client": ("system:kubelet-api-admin", [_user("kube-apiserver-kubelet-client")]),
}


# Namespaced ones (upstream's namespace_policy.go): extension apiservers read how to
# authenticate (apiserver.authenticationinfo) through a binding of their own to this Role.
AUTHENTICATION_READER = "extension-apiserver-authentication-reader"
ROLES: dict[tuple[str, str], list[dict]] = {
    ("kube-system", AUTHENTICATION_READER): [rule(READ, [""], ["configmaps"], ["extension-apiserver-authentication"])],
}
ROLE_BINDINGS: dict[tuple[str, str], tuple[str, list[dict]]] = {
    ("kube-system", "system::extension-apiserver-authentication-reader"):
        (AUTHENTICATION_READER, [_user("system:kube-controller-manager"), _user("system:kube-scheduler")]),
}


def role(namespace: str, name: str, rules: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(BOOTSTRAPPING_LABEL),
                         "annotations": {AUTOUPDATE: "true"}},
            "rules": rules}


def role_binding(namespace: str, name: str, role_name: str, subjects: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(BOOTSTRAPPING_LABEL),
                         "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": subjects}


def cluster_role(name: str, rules: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": dict(BOOTSTRAPPING_LABEL), "annotations": {AUTOUPDATE: "true"}},
            "rules": rules}


def cluster_role_binding(name: str, role: str, subjects: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(BOOTSTRAPPING_LABEL), "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects}


def bootstrap_objects() -> list[tuple[str, dict]]:
    """(store key, object) of every bootstrap ClusterRole, ClusterRoleBinding, Role, then
    RoleBinding."""
    roles = [(f"/registry/clusterroles/{n}", cluster_role(n, r)) for n, r in CLUSTER_ROLES.items()]
    bindings = [(f"/registry/clusterrolebindings/{n}", cluster_role_binding(n, ref, subjects))
                for n, (ref, subjects) in CLUSTER_ROLE_BINDINGS.items()]
    namespaced = [(f"/registry/roles/{ns}/{n}", role(ns, n, r)) for (ns, n), r in ROLES.items()]
    namespaced += [(f"/registry/rolebindings/{ns}/{n}", role_binding(ns, n, ref, subjects))
                   for (ns, n), (ref, subjects) in ROLE_BINDINGS.items()]
    return roles + bindings + namespaced


def reconciled(current: dict, wanted: dict) -> dict:
    """Pure: ``current`` with what ``wanted`` has and it lacks (rules, subjects) when it is still
    annotated autoupdate "true"; else ``current`` unchanged (a user's edit wins)."""
    if (current.get("metadata", {}).get("annotations") or {}).get(AUTOUPDATE) != "true":
        return current
    merged = dict(current)
    for field in ("rules", "subjects"):
        if field in wanted:
            have = list(current.get(field) or [])
            merged[field] = have + [item for item in wanted[field] if item not in have]
    return merged


async def ensure(storage: Storage) -> None:
    """Create the missing bootstrap objects and update the auto-updated ones (see module doc).
    Raises what the store raises (the apiserver does not start without its policy)."""
    for key, wanted in bootstrap_objects():
        try:
            await storage.create(key, meta.stamp_new(wanted))
            continue
        except KeyExists:
            pass
        with contextlib.suppress(NotFound):
            await storage.guaranteed_update(key, lambda current, wanted=wanted: reconciled(current, wanted))
