"""The PersistentVolume controller: the binder, reclaim, and the local-path provisioner.

Kubernetes' persistentvolume ``PersistentVolumeController`` in the shape of the others: handlers
enqueue ``claim:<ns>/<name>`` and ``volume:<name>`` keys, ``reconcile`` works from the caches.

Claims (``sync_claim``):
- unbound: WaitForFirstConsumer claims wait (Event WaitForFirstConsumer) until the scheduler
  writes ``volume.kubernetes.io/selected-node``; then the smallest free volume that fits (class,
  access modes, volume mode, capacity, selector, the selected node) is bound — the volume's
  claimRef first, then the claim's volumeName and annotations, then both statuses (Bound). With
  no such volume the class's provisioner is asked: ``pkube.io/local-path`` makes a hostPath
  volume on the selected node (``localpath.provisioned_volume``); any other provisioner is
  waited for (Event ExternalProvisioning). With no class either the claim stays Pending with a
  FailedBinding Event saying why.
- bound: the status says Bound with the volume's capacity; a vanished volume makes it Lost.
Volumes (``sync_volume``): no claimRef → Available; claimRef to a live claim → Bound (or waits
for the claim's side); claimRef to a claim that is gone (checked with a GET, not just the
cache) → Released, then the reclaim policy: Retain keeps it Released; Delete removes a
local-path volume's directory on its node (a helper pod, as k3s's provisioner does) and then
the volume; a static volume with Delete, or Recycle, becomes Failed with an Event.
"""

from __future__ import annotations

import logging
from typing import Optional

from pkube.api import storage
from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS, STORAGECLASSES
from pkube.controllers import localpath
from pkube.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

CLAIM, VOLUME = "claim:", "volume:"


def claim_status(volume: dict) -> dict:
    """A bound claim's status: what the volume gives."""
    spec = volume.get("spec") or {}
    return {"phase": "Bound", "accessModes": list(spec.get("accessModes") or []),
            "capacity": dict(spec.get("capacity") or {})}


def pending_reason(claim: dict, storage_class: Optional[dict]) -> tuple[str, str, str]:
    """(event type, reason, message) of a claim no volume fits, as upstream words them."""
    name = storage.claim_class(claim)
    if storage_class is None and name:
        return "Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{name}" not found'
    if storage_class is None:
        return "Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set"
    provisioner = storage_class.get("provisioner") or ""
    if provisioner == "kubernetes.io/no-provisioner":
        return "Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set"
    return ("Normal", "ExternalProvisioning", f"Waiting for a volume to be created either by the external "
            f"provisioner '{provisioner}' or manually by the system administrator. If volume creation is "
            f"delayed, please verify that the provisioner is running and correctly registered.")


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx, workers=2)
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.classes = ctx.informers.informer(STORAGECLASSES)
        self.nodes = ctx.informers.informer(NODES)
        self.pods = ctx.informers.informer(PODS)
        self.claims.add_handlers(self._claim_changed, lambda old, new: self._claim_changed(new), self._claim_changed)
        self.volumes.add_handlers(self._volume_changed, lambda old, new: self._volume_changed(new),
                                  self._volume_changed)
        self.classes.add_handlers(self._class_added, lambda old, new: self._class_added(new))
        self.pods.add_handlers(self._helper_changed, lambda old, new: self._helper_changed(new), self._helper_changed)

    # handlers: enqueue only
    def _claim_changed(self, claim: dict) -> None:
        meta = claim["metadata"]
        self.queue.add(f"{CLAIM}{meta.get('namespace')}/{meta['name']}")
        if (claim.get("spec") or {}).get("volumeName"):
            self.queue.add(VOLUME + claim["spec"]["volumeName"])
        for volume in self.volumes.store.list():     # a released volume waits for its claim's deletion
            if storage.claim_ref_names(volume, claim):
                self.queue.add(VOLUME + volume["metadata"]["name"])

    def _volume_changed(self, volume: dict) -> None:
        self.queue.add(VOLUME + volume["metadata"]["name"])
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(f"{CLAIM}{ref.get('namespace')}/{ref['name']}")
        else:
            self._unbound_claims_again()      # a free volume: a Pending claim may fit it now

    def _class_added(self, storage_class: dict) -> None:
        self._unbound_claims_again()

    def _unbound_claims_again(self) -> None:
        for claim in self.claims.store.list():
            if not (claim.get("spec") or {}).get("volumeName"):
                self._claim_changed(claim)

    def _helper_changed(self, pod: dict) -> None:
        volume = (pod["metadata"].get("labels") or {}).get(localpath.HELPER_LABEL)
        if volume:
            self.queue.add(VOLUME + volume)

    async def reconcile(self, key: str) -> None:
        if key.startswith(CLAIM):
            claim = self.claims.store.get(key[len(CLAIM):])
            if claim is not None and not claim["metadata"].get("deletionTimestamp"):
                await self.sync_claim(claim)
        elif key.startswith(VOLUME):
            volume = self.volumes.store.get(key[len(VOLUME):])
            if volume is not None:
                await self.sync_volume(volume)

    # ----- claims -----

    async def sync_claim(self, claim: dict) -> None:
        name = (claim.get("spec") or {}).get("volumeName")
        if name:
            await self._sync_bound_claim(claim, name)
            return
        storage_class = self.classes.store.get(storage.claim_class(claim)) if storage.claim_class(claim) else None
        annotations = claim["metadata"].get("annotations") or {}
        node_name = annotations.get(storage.ANN_SELECTED_NODE)
        if storage.binding_mode(storage_class) == storage.WAIT_FOR_FIRST_CONSUMER and not node_name:
            await self._pending(claim, "Normal", "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
            return
        node = self.nodes.store.get(node_name) if node_name else None
        volume = storage.find_matching_volume(claim, self.volumes.store.list(), node)
        if volume is None and storage_class is not None and \
                storage_class.get("provisioner") == storage.LOCAL_PATH_PROVISIONER:
            volume = await self._provision(claim, storage_class, node_name)
            if volume is None:
                return
        if volume is None:
            await self._pending(claim, *pending_reason(claim, storage_class))
            return
        await self._bind(volume, claim)

    async def _sync_bound_claim(self, claim: dict, volume_name: str) -> None:
        volume = self.volumes.store.get(volume_name)
        if volume is None:
            try:
                volume = await self.client.get(PERSISTENTVOLUMES, volume_name)
            except NotFound:
                await self._claim_phase(claim, {"phase": "Lost"})
                self.ctx.recorder.emit(claim, "Warning", "ClaimLost",
                                       "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
                return
        if not storage.claim_ref_names(volume, claim):
            if (volume.get("spec") or {}).get("claimRef"):
                self.ctx.recorder.emit(claim, "Warning", "ClaimMisbound",
                                       "Two claims are bound to the same volume, this one is bound incorrectly")
                return
            volume = await self._bind_volume_side(volume, claim)
        await self._bind_claim_side(claim, volume)

    async def _pending(self, claim: dict, type_: str, reason: str, message: str) -> None:
        if ((claim.get("status") or {}).get("phase")) != "Pending":
            await self._claim_phase(claim, {"phase": "Pending"})
        self.ctx.recorder.emit(claim, type_, reason, message)

    async def _provision(self, claim: dict, storage_class: dict, node_name: Optional[str]) -> Optional[dict]:
        """Create the local-path volume of ``claim`` (or find the one made before); None when
        the claim cannot be provisioned (Event ProvisioningFailed)."""
        problem = localpath.cannot_provision(claim, node_name)
        if problem:
            await self._pending(claim, "Warning", "ProvisioningFailed", problem)
            return None
        volume = localpath.provisioned_volume(claim, storage_class, node_name)
        try:
            created = await self.client.create(PERSISTENTVOLUMES, volume)
        except AlreadyExists:
            created = await self.client.get(PERSISTENTVOLUMES, volume["metadata"]["name"])
        self.ctx.recorder.emit(claim, "Normal", "ProvisioningSucceeded",
                               f"Successfully provisioned volume {created['metadata']['name']}")
        return created

    async def _bind(self, volume: dict, claim: dict) -> None:
        """Both sides, volume first (a crash in between leaves a claimRef the next pass finishes)."""
        volume = await self._bind_volume_side(volume, claim)
        await self._bind_claim_side(claim, volume)

    async def _bind_volume_side(self, volume: dict, claim: dict) -> dict:
        meta, claim_meta = volume["metadata"], claim["metadata"]
        ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": claim_meta.get("namespace"),
               "name": claim_meta["name"], "uid": claim_meta.get("uid"),
               "resourceVersion": claim_meta.get("resourceVersion")}
        current = (volume.get("spec") or {}).get("claimRef") or {}
        if current.get("uid") != claim_meta.get("uid"):
            patch: dict = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"claimRef": ref}}
            if not current:
                patch["metadata"]["annotations"] = {storage.ANN_BOUND_BY_CONTROLLER: "yes"}
            volume = await self.client.patch(PERSISTENTVOLUMES, meta["name"], patch)
        if (volume.get("status") or {}).get("phase") != "Bound":
            volume = await self.client.patch(PERSISTENTVOLUMES, meta["name"], {"status": {"phase": "Bound"}},
                                             subresource="status")
        return volume

    async def _bind_claim_side(self, claim: dict, volume: dict) -> None:
        meta = claim["metadata"]
        annotations = meta.get("annotations") or {}
        if (claim.get("spec") or {}).get("volumeName") != volume["metadata"]["name"] or \
                annotations.get(storage.ANN_BIND_COMPLETED) != "yes":
            wanted = {storage.ANN_BIND_COMPLETED: "yes"}
            if not (claim.get("spec") or {}).get("volumeName"):
                wanted[storage.ANN_BOUND_BY_CONTROLLER] = "yes"
            patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": wanted},
                     "spec": {"volumeName": volume["metadata"]["name"]}}
            claim = await self.client.patch(PERSISTENTVOLUMECLAIMS, meta["name"], patch, meta.get("namespace"))
        status = claim_status(volume)
        current = claim.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            await self._claim_phase(claim, status)

    async def _claim_phase(self, claim: dict, status: dict) -> None:
        meta = claim["metadata"]
        try:
            await self.client.patch(PERSISTENTVOLUMECLAIMS, meta["name"], {"status": status},
                                    meta.get("namespace"), subresource="status")
        except NotFound:
            pass

    # ----- volumes -----

    async def sync_volume(self, volume: dict) -> None:
        ref = (volume.get("spec") or {}).get("claimRef")
        phase = (volume.get("status") or {}).get("phase")
        if not ref:
            if phase not in ("Available", "Failed"):
                await self._volume_phase(volume, "Available")
            return
        claim = await self._claim_of(ref)
        if claim is None:
            await self._released(volume)
            return
        if (claim.get("spec") or {}).get("volumeName") == volume["metadata"]["name"]:
            if phase != "Bound":
                await self._volume_phase(volume, "Bound")
        elif not (claim.get("spec") or {}).get("volumeName"):
            if phase not in ("Available", "Bound"):
                await self._volume_phase(volume, "Available")   # pre-bound: the claim's pass binds it
        elif (volume["metadata"].get("annotations") or {}).get(storage.ANN_BOUND_BY_CONTROLLER):
            await self._unbind(volume)     # the claim took another volume: this one is free again

    async def _claim_of(self, ref: dict) -> Optional[dict]:
        """The claim a claimRef names, if it still exists with that uid (a live GET when the
        cache does not have it, so a lagging cache never releases a volume)."""
        claim = self.claims.store.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if claim is None:
            try:
                claim = await self.client.get(PERSISTENTVOLUMECLAIMS, ref.get("name"), ref.get("namespace"))
            except NotFound:
                return None
        if ref.get("uid") and claim["metadata"].get("uid") != ref["uid"]:
            return None
        return claim

    async def _unbind(self, volume: dict) -> None:
        meta = volume["metadata"]
        annotations = {storage.ANN_BOUND_BY_CONTROLLER: None}
        await self.client.patch(PERSISTENTVOLUMES, meta["name"], {
            "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": annotations},
            "spec": {"claimRef": None}})

    async def _released(self, volume: dict) -> None:
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        phase = (volume.get("status") or {}).get("phase")
        if phase not in ("Released", "Failed"):
            volume = await self._volume_phase(volume, "Released") or volume
            phase = "Released"
        if policy == "Retain" or phase == "Failed" or volume["metadata"].get("deletionTimestamp"):
            return
        if policy == "Delete" and localpath.is_local_path(volume):
            await self._delete_local_path(volume)
            return
        message = ("Recycle is not supported by pkube" if policy == "Recycle" else
                   f"error getting deleter volume plugin for volume \"{volume['metadata']['name']}\": "
                   f"no deletable volume plugin matched")
        await self._volume_phase(volume, "Failed", message)
        self.ctx.recorder.emit(volume, "Warning", "VolumeFailedDelete" if policy == "Delete" else "VolumeFailedRecycle",
                               message)

    async def _delete_local_path(self, volume: dict) -> None:
        """Run the helper pod that removes the volume's directory on its node; once it has
        succeeded delete it and the volume. A failed helper makes the volume Failed."""
        name = volume["metadata"]["name"]
        helper = self.pods.store.get(f"{localpath.HELPER_NAMESPACE}/{localpath.helper_pod_name(name)}")
        if helper is None:
            try:
                await self.client.create(PODS, localpath.delete_helper_pod(volume), localpath.HELPER_NAMESPACE)
            except AlreadyExists:
                pass
            return
        phase = (helper.get("status") or {}).get("phase")
        if phase == "Succeeded":     # the volume first: a pass on a stale cache must not redo the helper
            await self._delete(PERSISTENTVOLUMES, name)
            await self._delete(PODS, localpath.helper_pod_name(name), localpath.HELPER_NAMESPACE)
        elif phase == "Failed":
            message = f"helper pod {helper['metadata']['name']} failed to remove {storage.volume_host_path(volume)}"
            await self._volume_phase(volume, "Failed", message)
            self.ctx.recorder.emit(volume, "Warning", "VolumeFailedDelete", message)
            await self._delete(PODS, localpath.helper_pod_name(name), localpath.HELPER_NAMESPACE)

    async def _delete(self, resource, name: str, namespace: Optional[str] = None) -> None:
        """Delete, at once for a (finished) helper pod, as the apiserver does for terminated pods."""
        try:
            if resource is PODS:
                await self.client.delete(resource, name, namespace, grace_period_seconds=0)
            else:
                await self.client.delete(resource, name, namespace)
        except NotFound:
            pass

    async def _volume_phase(self, volume: dict, phase: str, message: str = "") -> Optional[dict]:
        status = {"phase": phase, "message": message or None}
        try:
            return await self.client.patch(PERSISTENTVOLUMES, volume["metadata"]["name"], {"status": status},
                                           subresource="status")
        except NotFound:
            return None


def new_controller(ctx: ControllerContext) -> PersistentVolumeController:
    return PersistentVolumeController(ctx)
