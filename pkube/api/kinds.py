"""The kinds registry: which resources pkube serves, under which group/version/plural.

A ``ResourceInfo`` is the static description of one resource, as Kubernetes'
discovery documents it (APIResource). ``Registry`` answers the lookups the
apiserver and clients need: by (group, version, plural), by kind, by short name.
The built-in resources are fixed; custom resources (from CustomResourceDefinitions)
are swapped in and out at run time with ``Registry.set_custom``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource.

    ``subresources`` maps a subresource name ("status", "binding", "scale") to
    the verbs it supports. ``group`` is "" for the core group. ``storage_name``
    is the key segment after ``/registry/`` ("" means the plural; custom
    resources use "group/plural", as Kubernetes does). ``custom`` is None for a
    built-in resource, else the custom resource's description (an
    ``api.crd.CustomResource``: schema, printer columns, scale paths).
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    verbs: tuple[str, ...] = ALL_VERBS
    list_kind: str = ""
    storage_name: str = ""
    custom: object = field(default=None, compare=False, hash=False, repr=False)

    @property
    def api_version(self) -> str:
        """'v1' for the core group, else 'group/version'."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def builtin_kind(self) -> str:
        """The kind of a built-in resource; "" for a custom one (a CRD may name its kind
        Service or Pod in its own group: the built-in kinds' rules must not apply to it)."""
        return "" if self.custom is not None else self.kind

    def key_prefix(self, namespace: Optional[str] = None) -> str:
        """The store prefix holding this resource (optionally one namespace), ending in '/'."""
        stored = self.storage_name or self.plural
        if namespace and self.namespaced:
            return f"/registry/{stored}/{namespace}/"
        return f"/registry/{stored}/"

    def key(self, namespace: Optional[str], name: str) -> str:
        """The store key of one object; namespace is ignored for cluster-scoped kinds."""
        return self.key_prefix(namespace) + name


def _info(group: str, kind: str, plural: str, namespaced: bool, short_names=(), categories=(),
          subresources=None, version: str = "v1", storage_name: str = "") -> ResourceInfo:
    return ResourceInfo(group=group, version=version, kind=kind, plural=plural,
                        singular=kind.lower(), namespaced=namespaced,
                        short_names=tuple(short_names), categories=tuple(categories),
                        subresources=dict(subresources or {}), list_kind=kind + "List",
                        storage_name=storage_name)


def _create_only(group: str, kind: str, plural: str, namespaced: bool = False) -> ResourceInfo:
    """A review: a question created and answered at once, never stored (pkube/apiserver/auth/reviews.py)."""
    info = _info(group, kind, plural, namespaced)
    return ResourceInfo(**{**info.__dict__, "verbs": ("create",)})


_STATUS = ("get", "patch", "update")
_SCALE = ("get", "patch", "update")

BUILTIN_RESOURCES: tuple[ResourceInfo, ...] = (
    _info("", "Namespace", "namespaces", False, ["ns"], subresources={"status": _STATUS}),
    _info("", "Node", "nodes", False, ["no"], subresources={"status": _STATUS}),
    _info("", "Pod", "pods", True, ["po"], ["all"],
          subresources={"status": _STATUS, "binding": ("create",), "eviction": ("create",),
                        "log": ("get",), "exec": ("create", "get"), "attach": ("create", "get"),
                        "portforward": ("create", "get")}),
    _info("", "Service", "services", True, ["svc"], ["all"], subresources={"status": _STATUS}),
    _info("", "Endpoints", "endpoints", True, ["ep"]),
    _info("", "Secret", "secrets", True),
    _info("", "ConfigMap", "configmaps", True, ["cm"]),
    _info("", "Event", "events", True, ["ev"]),
    _info("", "ServiceAccount", "serviceaccounts", True, ["sa"], subresources={"token": ("create",)}),
    _info("", "LimitRange", "limitranges", True, ["limits"]),
    _info("apps", "Deployment", "deployments", True, ["deploy"], ["all"],
          subresources={"status": _STATUS, "scale": _SCALE}),
    _info("apps", "ReplicaSet", "replicasets", True, ["rs"], ["all"],
          subresources={"status": _STATUS, "scale": _SCALE}),
    _info("apps", "DaemonSet", "daemonsets", True, ["ds"], ["all"], subresources={"status": _STATUS}),
    _info("apps", "StatefulSet", "statefulsets", True, ["sts"], ["all"],
          subresources={"status": _STATUS, "scale": _SCALE}),
    _info("apps", "ControllerRevision", "controllerrevisions", True),
    _info("batch", "Job", "jobs", True, (), ["all"], subresources={"status": _STATUS}),
    _info("batch", "CronJob", "cronjobs", True, ["cj"], ["all"], subresources={"status": _STATUS}),
    _info("", "ReplicationController", "replicationcontrollers", True, ["rc"], ["all"],
          subresources={"status": _STATUS, "scale": _SCALE}),
    _info("", "PersistentVolume", "persistentvolumes", False, ["pv"], subresources={"status": _STATUS}),
    _info("", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"],
          subresources={"status": _STATUS}),
    _info("storage.k8s.io", "StorageClass", "storageclasses", False, ["sc"]),
    _info("policy", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"],
          subresources={"status": _STATUS}),
    _info("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ["hpa"], ["all"],
          subresources={"status": _STATUS}, version="v2"),
    _info("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ["hpa"], ["all"],
          subresources={"status": _STATUS}, version="v1"),  # served converted (pkube/apiserver/conversion.py)
    _info("discovery.k8s.io", "EndpointSlice", "endpointslices", True),
    _info("networking.k8s.io", "Ingress", "ingresses", True, ["ing"], subresources={"status": _STATUS}),
    _info("networking.k8s.io", "IngressClass", "ingressclasses", False),
    _info("networking.k8s.io", "NetworkPolicy", "networkpolicies", True, ["netpol"]),
    _info("coordination.k8s.io", "Lease", "leases", True),
    _info("rbac.authorization.k8s.io", "Role", "roles", True),
    _info("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", True),
    _info("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", False),
    _info("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", False),
    _info("certificates.k8s.io", "CertificateSigningRequest", "certificatesigningrequests", False, ["csr"],
          subresources={"status": _STATUS, "approval": _STATUS}),
    _create_only("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews"),
    _create_only("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews"),
    _create_only("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews"),
    _create_only("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
    _create_only("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews"),
    _create_only("authentication.k8s.io", "TokenReview", "tokenreviews"),
    _info("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", False,
          ["crd", "crds"], ["api-extensions"], subresources={"status": _STATUS},
          storage_name="apiextensions.k8s.io/customresourcedefinitions"),
    _info("apiregistration.k8s.io", "APIService", "apiservices", False, (), ["api-extensions"],
          subresources={"status": _STATUS}),   # pkube/apiserver/aggregation.py
)
CRD_GROUP = "apiextensions.k8s.io"


_KUBE_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")
_STABILITY = {None: 0, "beta": 1, "alpha": 2}


def version_priority(version: str) -> tuple:
    """Sort key of Kubernetes' version priority: v2, v1, v1beta2, v1beta1, v1alpha1, then
    other names alphabetically (the first is the preferred version)."""
    match = _KUBE_VERSION.fullmatch(version)
    if match is None:
        return (3, 0, 0, version)
    major, stability, minor = match.groups()
    return (_STABILITY[stability], -int(major), -int(minor or 0), version)


def is_crd(info: ResourceInfo) -> bool:
    """True for the CustomResourceDefinition resource itself."""
    return info.group == CRD_GROUP and info.kind == "CustomResourceDefinition"


class Registry:
    """Lookups over the built-in resources plus the custom ones of the moment.

    ``set_custom`` replaces every custom resource at once (the CRD watcher
    calls it); lookups see either the old set or the new one, never a mix.
    ``version`` counts those replacements (caches of derived documents key on
    it). Built-in resources win every name lookup.
    """

    def __init__(self, resources: Iterable[ResourceInfo] = BUILTIN_RESOURCES):
        self.builtin = tuple(resources)
        self.version = 0
        self._index(())

    def set_custom(self, resources: Iterable[ResourceInfo]) -> None:
        """Serve exactly ``resources`` as the custom resources (replacing the previous set)."""
        self._index(tuple(resources))
        self.version += 1

    def _index(self, custom: tuple[ResourceInfo, ...]) -> None:
        resources = self.builtin + custom
        by_gvr = {(r.group, r.version, r.plural): r for r in reversed(resources)}
        by_kind: dict[tuple[str, str], ResourceInfo] = {}
        by_name: dict[str, ResourceInfo] = {}
        for r in resources:
            by_kind.setdefault((r.group, r.kind), r)
            for name in (r.plural, r.singular, r.kind.lower(), *r.short_names):
                by_name.setdefault(name, r)
        self.custom = custom
        self.resources = resources
        self._by_gvr, self._by_kind, self._by_name = by_gvr, by_kind, by_name

    def get(self, group: str, version: str, plural: str) -> Optional[ResourceInfo]:
        """The resource served at /{group}/{version}/{plural}, or None."""
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, kind: str, group: Optional[str] = None) -> Optional[ResourceInfo]:
        """The resource of ``kind`` (in ``group`` when given), or None."""
        if group is not None:
            return self._by_kind.get((group, kind))
        return next((r for r in self.resources if r.kind == kind), None)

    def by_api_version_kind(self, api_version: str, kind: str) -> Optional[ResourceInfo]:
        """The resource for an object's apiVersion + kind, or None."""
        group, _, version = api_version.rpartition("/")
        info = self._by_kind.get((group, kind))
        if info is not None and info.version != version:
            info = self._by_gvr.get((group, version, info.plural))
        return info

    def lookup(self, name: str) -> Optional[ResourceInfo]:
        """Resolve a user-typed name: plural, singular, kind or short name (case-insensitive)."""
        return self._by_name.get(name.lower().split(".", 1)[0])

    def group_versions(self) -> list[tuple[str, str]]:
        """Distinct (group, version) pairs in registry order, core first."""
        return list(dict.fromkeys((r.group, r.version) for r in self.resources))

    def in_group_version(self, group: str, version: str) -> list[ResourceInfo]:
        return [r for r in self.resources if r.group == group and r.version == version]
