"""What `pkube up` adds to a fresh cluster once its apiserver answers, as kubeadm's addons.

The cluster DNS itself runs inside each node's proxy (docs/proxy.md); what is added here is
its Service, `kube-system/kube-dns` on the DNS address (the tenth address of the Service
range, as kubeadm picks), so that no other Service is given that address and clients find
the DNS the Kubernetes way. It has no selector: the proxy answers on that address itself.

Also the ClusterRoleBinding ``pkube-node-proxier``: the group ``system:nodes`` gets the role
``system:node-proxier`` (list and watch Services, EndpointSlices, Nodes), because the proxy of
a joined machine runs as its node (cluster.join), where kubeadm gives kube-proxy a
ServiceAccount of its own. A node could list Services and Endpoints already.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from pkube.client.errors import AlreadyExists, ApiError, NotFound
from pkube.client.kubeconfig import load_kubeconfig
from pkube.client.resources import Resource, SERVICES
from pkube.client.rest import ApiClient

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
ADDON_TIMEOUT_SECONDS = 30.0
CLUSTERROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


def cluster_dns_ip(service_cidr: str = DEFAULT_SERVICE_CIDR) -> str:
    """The cluster DNS address: the tenth address of the Service range (10.96.0.10)."""
    return str(ipaddress.IPv4Network(service_cidr)[10])


def kube_dns_service(ip: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "pkube-dns"}},
        "spec": {"clusterIP": ip, "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    }


def node_proxier_binding() -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "pkube-node-proxier"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}


def ensure_kube_dns_service(kubeconfig: Path, ip: str, timeout: float = ADDON_TIMEOUT_SECONDS) -> None:
    """Create kube-system/kube-dns on ``ip`` unless it exists; retried while the apiserver
    is still making its system namespaces. Raises ApiError or OSError after ``timeout``."""
    ensure_object(kubeconfig, SERVICES, kube_dns_service(ip), "kube-system", timeout)


def ensure_node_proxier_binding(kubeconfig: Path, timeout: float = ADDON_TIMEOUT_SECONDS) -> None:
    """Create the ClusterRoleBinding pkube-node-proxier unless it exists; raises as ensure_object."""
    ensure_object(kubeconfig, CLUSTERROLEBINDINGS, node_proxier_binding(), None, timeout)


def ensure_object(kubeconfig: Path, resource: Resource, body: dict, namespace, timeout: float) -> None:
    """Create `body` unless an object of its name exists (looked up first: a create of one that
    exists may be refused for another reason, as a Service's taken clusterIP is, 422), retried
    while the apiserver is still starting. A refusal of the object itself (400, 422) raises at
    once; any other ApiError or OSError after ``timeout``."""
    deadline = time.monotonic() + timeout
    name = body["metadata"]["name"]
    with ApiClient(load_kubeconfig(str(kubeconfig))) as client:
        while True:
            try:
                if not exists(client, resource, name, namespace):
                    client.create(resource, body, namespace)
                return
            except AlreadyExists:
                return
            except ApiError as err:
                if err.code in (400, 422) or time.monotonic() > deadline:
                    raise
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def exists(client: ApiClient, resource: Resource, name: str, namespace) -> bool:
    """Whether the object is there (ApiError other than NotFound, OSError: as the client raises)."""
    try:
        client.get(resource, name, namespace)
        return True
    except NotFound:
        return False
