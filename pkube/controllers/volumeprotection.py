"""Storage object in-use protection: Kubernetes' pvc-protection and pv-protection controllers.

A claim carries ``kubernetes.io/pvc-protection`` and a volume ``kubernetes.io/pv-protection``
(the apiserver's admission adds them on create; this controller adds them to any that lacks
them). Once deleted, a claim keeps its finalizer while a pod that has not terminated uses it
(checked on the cache, then confirmed with a live list of the namespace's pods, as upstream
does, so a lagging cache never lets a claim in use go); a volume keeps its finalizer while it
is Bound. Keys: ``claim:<ns>/<name>`` and ``volume:<name>``.
"""

from __future__ import annotations

import logging

from pkube.api import storage
from pkube.client.errors import NotFound
from pkube.client.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.persistentvolume import CLAIM, VOLUME

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed")


def pod_uses_claim(pod: dict, claim_name: str) -> bool:
    """A pod that has not terminated and has a volume of the claim."""
    if (pod.get("status") or {}).get("phase") in TERMINAL:
        return False
    return claim_name in storage.claim_names_of_pod(pod)


class VolumeProtectionController(Controller):
    name = "volume-protection"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx, workers=1)
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.pods = ctx.informers.informer(PODS)
        self.claims.add_handlers(self._claim, lambda old, new: self._claim(new))
        self.volumes.add_handlers(self._volume, lambda old, new: self._volume(new))
        self.pods.add_handlers(self._pod, lambda old, new: self._pod(new), self._pod_gone)

    def _claim(self, claim: dict) -> None:
        self.queue.add(f"{CLAIM}{claim['metadata'].get('namespace')}/{claim['metadata']['name']}")

    def _volume(self, volume: dict) -> None:
        self.queue.add(VOLUME + volume["metadata"]["name"])

    def _pod(self, pod: dict) -> None:
        """A pod that ends or goes may free the claims it used."""
        if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in TERMINAL:
            self._pod_gone(pod)

    def _pod_gone(self, pod: dict) -> None:
        for name in storage.claim_names_of_pod(pod):
            self.queue.add(f"{CLAIM}{pod['metadata'].get('namespace')}/{name}")

    async def reconcile(self, key: str) -> None:
        if key.startswith(CLAIM):
            claim = self.claims.store.get(key[len(CLAIM):])
            if claim is not None:
                await self._sync(PERSISTENTVOLUMECLAIMS, claim, storage.PVC_PROTECTION, self._claim_in_use)
        elif key.startswith(VOLUME):
            volume = self.volumes.store.get(key[len(VOLUME):])
            if volume is not None:
                await self._sync(PERSISTENTVOLUMES, volume, storage.PV_PROTECTION, self._volume_in_use)

    async def _sync(self, resource, obj: dict, finalizer: str, in_use) -> None:
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if not meta.get("deletionTimestamp"):
            if finalizer not in finalizers:
                await self._set_finalizers(resource, obj, finalizers + [finalizer])
            return
        if finalizer in finalizers and not await in_use(obj):
            await self._set_finalizers(resource, obj, [f for f in finalizers if f != finalizer])

    async def _claim_in_use(self, claim: dict) -> bool:
        namespace, name = claim["metadata"].get("namespace"), claim["metadata"]["name"]
        if any(pod_uses_claim(p, name) for p in self.pods.store.list()
               if p["metadata"].get("namespace") == namespace):
            return True
        live = await self.client.list(PODS, namespace)
        return any(pod_uses_claim(p, name) for p in live.get("items") or [])

    async def _volume_in_use(self, volume: dict) -> bool:
        return (volume.get("status") or {}).get("phase") == "Bound"

    async def _set_finalizers(self, resource, obj: dict, finalizers: list) -> None:
        meta = obj["metadata"]
        patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.client.patch(resource, meta["name"], patch, meta.get("namespace"))
        except NotFound:
            pass


def new_controller(ctx: ControllerContext) -> VolumeProtectionController:
    return VolumeProtectionController(ctx)
