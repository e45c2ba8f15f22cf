"""The Node authorizer: what a kubelet (``system:node:<name>`` in ``system:nodes``) may do,
as Kubernetes' ``plugin/pkg/auth/authorizer/node`` decides it.

A node may read a Secret, ConfigMap, PersistentVolumeClaim or PersistentVolume, and ask
for a ServiceAccount's token, only when a pod bound to it uses that object (a graph kept
from watches of pods and PVCs); it may get, update, patch and delete only its own Node and
its own Lease in kube-node-lease, and delete only pods bound to it. Everything else a
kubelet needs (listing pods, writing pod status and events, creating mirror pods,
registering) comes from ``policy.node_rules``; NodeRestriction admission then checks
the objects written. Users that are not nodes get NO_OPINION.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Optional

from pkube.apiserver.auth import policy
from pkube.apiserver.auth.attributes import Attributes
from pkube.apiserver.requestinfo import RequestInfo
from pkube.apiserver.auth.authorizer import ALLOW, NO_OPINION
from pkube.apiserver.auth.mirror import Mirror
from pkube.apiserver.auth.rbac import Rule

LEASE_NAMESPACE = "kube-node-lease"
GRAPH_RESOURCES = frozenset(("secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes"))
READ_VERBS = frozenset(("get", "list", "watch"))

Ref = tuple[str, str, str]    # (resource, namespace, name); PersistentVolumes have namespace ""


def pod_refs(pod: dict) -> set[Ref]:
    """The Secrets, ConfigMaps, PVCs and ServiceAccount one pod uses (Kubernetes'
    VisitPodSecretNames / VisitPodConfigmapNames and the pod's volumes)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace", "")
    refs = {(kind, namespace, name) for kind, name in _spec_refs(spec, meta.get("name", "")) if name}
    return refs


def _spec_refs(spec: dict, pod_name: str) -> Iterator[tuple[str, str]]:
    yield "serviceaccounts", spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    for secret in spec.get("imagePullSecrets") or ():
        yield "secrets", secret.get("name", "")
    for volume in spec.get("volumes") or ():
        yield from _volume_refs(volume, pod_name)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or ():
            yield from _container_refs(container)


def _volume_refs(volume: dict, pod_name: str) -> Iterator[tuple[str, str]]:
    if "secret" in volume:
        yield "secrets", (volume["secret"] or {}).get("secretName", "")
    if "configMap" in volume:
        yield "configmaps", (volume["configMap"] or {}).get("name", "")
    if "persistentVolumeClaim" in volume:
        yield "persistentvolumeclaims", (volume["persistentVolumeClaim"] or {}).get("claimName", "")
    if "ephemeral" in volume:
        yield "persistentvolumeclaims", f"{pod_name}-{volume.get('name', '')}"
    for source in (volume.get("projected") or {}).get("sources") or ():
        if "secret" in source:
            yield "secrets", (source["secret"] or {}).get("name", "")
        if "configMap" in source:
            yield "configmaps", (source["configMap"] or {}).get("name", "")
    for plugin in ("csi", "cephfs", "rbd", "iscsi", "flexVolume", "azureFile", "scaleIO", "storageos"):
        secret_ref = (volume.get(plugin) or {}).get("nodePublishSecretRef") or (volume.get(plugin) or {}).get(
            "secretRef") or {}
        if secret_ref.get("name"):
            yield "secrets", secret_ref["name"]


def _container_refs(container: dict) -> Iterator[tuple[str, str]]:
    for source in container.get("envFrom") or ():
        yield "secrets", (source.get("secretRef") or {}).get("name", "")
        yield "configmaps", (source.get("configMapRef") or {}).get("name", "")
    for env in container.get("env") or ():
        value_from = env.get("valueFrom") or {}
        yield "secrets", (value_from.get("secretKeyRef") or {}).get("name", "")
        yield "configmaps", (value_from.get("configMapKeyRef") or {}).get("name", "")


class NodeGraph:
    """Which objects each node's pods use: ``refs[node]`` counts each Ref over the pods
    bound to it; ``pods[(namespace, name)]`` is the node a pod is bound to; ``volumes``
    maps a PVC (namespace, name) to its bound PersistentVolume."""

    def __init__(self):
        self.refs: dict[str, Counter] = {}
        self.pods: dict[tuple[str, str], str] = {}
        self._pod_refs: dict[tuple[str, str], set[Ref]] = {}
        self.volumes: dict[tuple[str, str], str] = {}

    def pod_changed(self, old: Optional[dict], new: Optional[dict]) -> None:
        """Feed one pod event (old None: added; new None: deleted)."""
        if old is not None:
            self._unbind(_pod_key(old))
        if new is not None and (new.get("spec") or {}).get("nodeName"):
            key, node = _pod_key(new), new["spec"]["nodeName"]
            refs = pod_refs(new)
            self.pods[key], self._pod_refs[key] = node, refs
            self.refs.setdefault(node, Counter()).update(refs)

    def _unbind(self, key: tuple[str, str]) -> None:
        node = self.pods.pop(key, None)
        refs = self._pod_refs.pop(key, set())
        if node is not None:
            counter = self.refs[node]
            counter.subtract(refs)
            for ref in refs:
                if counter[ref] <= 0:
                    del counter[ref]

    def claim_changed(self, old: Optional[dict], new: Optional[dict]) -> None:
        """Feed one PersistentVolumeClaim event."""
        for obj in (old, new):
            if obj is not None:
                self.volumes.pop(_pod_key(obj), None)
        if new is not None and (new.get("spec") or {}).get("volumeName"):
            self.volumes[_pod_key(new)] = new["spec"]["volumeName"]

    def related(self, node: str, resource: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to ``node`` uses the object."""
        refs = self.refs.get(node)
        if not refs:
            return False
        if resource == "persistentvolumes":
            return any(kind == "persistentvolumeclaims" and self.volumes.get((ns, claim)) == name
                       for kind, ns, claim in refs)
        return (resource, namespace, name) in refs


def _pod_key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class NodeAuthorizer:
    """The Node mode: the graph from watches (``start``/``stop``) plus the static node rules."""

    def __init__(self, storage=None, graph: Optional[NodeGraph] = None):
        self.graph = graph or NodeGraph()
        self.rules = tuple(Rule.of(r) for r in policy.node_rules())
        self.mirrors = [] if storage is None else [
            Mirror(storage, "/registry/pods/", self.graph.pod_changed),
            Mirror(storage, "/registry/persistentvolumeclaims/", self.graph.claim_changed)]

    async def start(self) -> None:
        for mirror in self.mirrors:
            await mirror.start()

    async def stop(self) -> None:
        for mirror in self.mirrors:
            await mirror.stop()

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        node, info = attrs.user.node_name, attrs.request
        if not node or not info.resource_request:
            return NO_OPINION, ""
        if info.api_group == "" and (info.resource in GRAPH_RESOURCES or info.resource == "serviceaccounts"):
            refusal = self._graph_refusal(node, info)
            return (NO_OPINION, refusal) if refusal else (ALLOW, "")
        refusal = self._own_objects_refusal(node, info)
        if refusal:
            return NO_OPINION, refusal
        if any(rule.allows(attrs) for rule in self.rules):
            return ALLOW, ""
        return NO_OPINION, ""

    def _graph_refusal(self, node: str, info: RequestInfo) -> str:
        """Why ``node`` may not read this Secret, ConfigMap, PVC or PV or ask for this
        ServiceAccount's token ("": it may)."""
        if info.resource == "serviceaccounts":
            if info.subresource != "token" or info.verb != "create":
                return "can only create tokens for individual service accounts"
        elif info.subresource or info.verb not in READ_VERBS:
            return "can only read resources of this type"
        if not info.name:
            return "can only get individual resources of this type"
        if not self.graph.related(node, info.resource, info.namespace, info.name):
            return f"no relationship found between node '{node}' and this object"
        return ""

    def _own_objects_refusal(self, node: str, info: RequestInfo) -> str:
        """Why ``node`` may not touch this Lease, Node or pod ("": the static rules decide)."""
        resource, group, verb = info.resource, info.api_group, info.verb
        if group == "coordination.k8s.io" and resource == "leases":
            if info.namespace != LEASE_NAMESPACE or (verb != "create" and info.name != node):
                return "can only access node lease with the same name as the requesting node"
        elif group == "" and resource == "nodes" and verb in ("update", "patch", "delete"):
            if info.name != node:
                return f"node '{node}' cannot modify node '{info.name}'"
        elif group == "" and resource == "pods" and verb == "delete" and not info.subresource:
            if self.graph.pods.get((info.namespace, info.name)) != node:
                return f"node '{node}' can only delete pods bound to itself"
        return ""
