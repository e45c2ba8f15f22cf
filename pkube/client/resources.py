"""Resource coordinates and their REST paths.

Anything with ``group``, ``version``, ``plural`` and ``namespaced`` attributes
is a resource here (``api.kinds.ResourceInfo`` included); ``Resource`` is the
minimal one, and the constants below are the resources the control plane uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Resource:
    """One resource type: ``group`` is "" for the core group."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


PODS = Resource("", "v1", "pods")
NODES = Resource("", "v1", "nodes", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
EVENTS = Resource("", "v1", "events")
SERVICES = Resource("", "v1", "services")
ENDPOINTS = Resource("", "v1", "endpoints")
CONFIGMAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
REPLICASETS = Resource("apps", "v1", "replicasets")
DAEMONSETS = Resource("apps", "v1", "daemonsets")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
CONTROLLERREVISIONS = Resource("apps", "v1", "controllerrevisions")
PERSISTENTVOLUMECLAIMS = Resource("", "v1", "persistentvolumeclaims")
JOBS = Resource("batch", "v1", "jobs")
CRONJOBS = Resource("batch", "v1", "cronjobs")
REPLICATIONCONTROLLERS = Resource("", "v1", "replicationcontrollers")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
CUSTOMRESOURCEDEFINITIONS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
PERSISTENTVOLUMES = Resource("", "v1", "persistentvolumes", namespaced=False)
STORAGECLASSES = Resource("storage.k8s.io", "v1", "storageclasses", namespaced=False)
LIMITRANGES = Resource("", "v1", "limitranges")
PODDISRUPTIONBUDGETS = Resource("policy", "v1", "poddisruptionbudgets")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses")
INGRESSCLASSES = Resource("networking.k8s.io", "v1", "ingressclasses", namespaced=False)
NETWORKPOLICIES = Resource("networking.k8s.io", "v1", "networkpolicies")
HORIZONTALPODAUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
POD_METRICS = Resource("metrics.k8s.io", "v1beta1", "pods")
CERTIFICATESIGNINGREQUESTS = Resource("certificates.k8s.io", "v1", "certificatesigningrequests", namespaced=False)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings")


def resource_path(resource, namespace: Optional[str] = None, name: Optional[str] = None,
                  subresource: Optional[str] = None) -> str:
    """The URL path of a collection, object or subresource.

    ``namespace`` None on a namespaced resource means all namespaces (lists and
    watches only); it is ignored for cluster-scoped resources. A subresource
    needs a name.
    """
    if subresource and not name:
        raise ValueError(f"subresource {subresource!r} needs an object name")
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{resource.plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path
