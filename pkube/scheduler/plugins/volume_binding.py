"""VolumeBinding: a pod's PersistentVolumeClaims must be usable on the node (kube-scheduler's
VolumeBinding plugin, without its in-scheduler binding cache).

Filter, per claim of the pod:
- missing or being deleted: unschedulable everywhere (the claim may still come);
- bound: its volume's required node affinity must admit the node
  ("node(s) had volume node affinity conflict");
- unbound, class Immediate (or no class): the binder has not bound it yet, so the pod waits
  ("pod has unbound immediate PersistentVolumeClaims");
- unbound, class WaitForFirstConsumer: a free static volume that fits on this node, or a class
  with a provisioner, makes the node fit ("node(s) didn't find available persistent volumes to
  bind" otherwise).
PreBind (``pre_bind``, before the pod's binding): each unbound WaitForFirstConsumer claim gets
``volume.kubernetes.io/selected-node``; the PV controller then binds or provisions on that node.
Unlike upstream the pod is bound at once instead of waiting for the claim: the kubelet refuses
to start it (FailedMount) until the claim is Bound and retries.

The caches are read through the scheduler's informers (``.store.get``), so the filter stays a
pure read; no equivalence key: pods with claims are filtered node by node.
"""

from __future__ import annotations

from typing import Optional

from pkube.api import storage
from pkube.client.errors import NotFound
from pkube.scheduler.types import SUCCESS, Code, Status

NAME = "VolumeBinding"
NOT_FOUND = 'persistentvolumeclaim "{}" not found'
BEING_DELETED = 'persistentvolumeclaim "{}" is being deleted'
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
MISSING_VOLUME = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


class VolumeBinding:
    """The plugin over the scheduler's claim, volume and class informers."""

    name = NAME

    def __init__(self, claims, volumes, classes):
        self.claims, self.volumes, self.classes = claims, volumes, classes

    def skip_filter(self, pod) -> bool:
        return not storage.claim_names_of_pod(pod.pod)

    def filter(self, pod, node) -> Status:
        node_obj = node.node or {"metadata": {"name": node.name, "labels": node.labels}}
        namespace = pod.pod["metadata"].get("namespace") or "default"
        for name in storage.claim_names_of_pod(pod.pod):
            status = self._claim_status(namespace, name, node_obj)
            if status.code:
                return status
        return SUCCESS

    def _claim_status(self, namespace: str, name: str, node: dict) -> Status:
        claim = self.claims.store.get(f"{namespace}/{name}")
        if claim is None:
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NOT_FOUND.format(name),))
        if claim["metadata"].get("deletionTimestamp"):
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (BEING_DELETED.format(name),))
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            volume = self.volumes.store.get(volume_name)
            if volume is None:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (MISSING_VOLUME,))
            if not storage.node_affinity_allows(volume, node):
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NODE_CONFLICT,))
            return SUCCESS
        storage_class = self._class_of(claim)
        if storage.binding_mode(storage_class) != storage.WAIT_FOR_FIRST_CONSUMER:
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (UNBOUND_IMMEDIATE,))
        if storage.find_matching_volume(claim, self.volumes.store.list(), node) is not None:
            return SUCCESS
        if (storage_class.get("provisioner") or NO_PROVISIONER) != NO_PROVISIONER:
            return SUCCESS
        return Status(Code.UNSCHEDULABLE, (NO_VOLUME,))

    def _class_of(self, claim: dict) -> Optional[dict]:
        name = storage.claim_class(claim)
        return self.classes.store.get(name) if name else None

    def claims_to_select(self, pod: dict, node_name: str) -> list[dict]:
        """The pod's unbound WaitForFirstConsumer claims whose selected node is not ``node_name``."""
        namespace = pod["metadata"].get("namespace") or "default"
        found = []
        for name in storage.claim_names_of_pod(pod):
            claim = self.claims.store.get(f"{namespace}/{name}")
            if claim is None or (claim.get("spec") or {}).get("volumeName"):
                continue
            if storage.binding_mode(self._class_of(claim)) != storage.WAIT_FOR_FIRST_CONSUMER:
                continue
            if (claim["metadata"].get("annotations") or {}).get(storage.ANN_SELECTED_NODE) != node_name:
                found.append(claim)
        return found

    async def pre_bind(self, client, resource, pod: dict, node_name: str) -> None:
        """Annotate the claims ``claims_to_select`` finds with the chosen node (``resource``: the
        claims' resource; a merge patch of the one annotation, so no conflict). A claim deleted
        meanwhile is skipped (the kubelet reports it); other API errors propagate: the caller
        forgets the pod and retries it with back-off."""
        for claim in self.claims_to_select(pod, node_name):
            meta = claim["metadata"]
            patch = {"metadata": {"annotations": {storage.ANN_SELECTED_NODE: node_name}}}
            try:
                await client.patch(resource, meta["name"], patch, meta.get("namespace"))
            except NotFound:
                continue
