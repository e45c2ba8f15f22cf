"""The storage admission plugins of kube-apiserver:

- ``DefaultStorageClass``: a PersistentVolumeClaim created without ``spec.storageClassName``
  (absent or null; "" explicitly asks for no class) gets the default StorageClass, the one
  annotated ``storageclass.kubernetes.io/is-default-class=true`` (the newest when several are);
  none when there is no default.
- ``StorageObjectInUseProtection``: a new claim gets the ``kubernetes.io/pvc-protection``
  finalizer and a new volume ``kubernetes.io/pv-protection`` (the volume-protection controller
  removes them once the object is no longer in use).

Both mutate on CREATE only. The default class comes from a cache of the StorageClasses filled by
a watch of the store (``start``), as ``PodSecurity`` keeps its namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Optional

from pkube.api import storage
from pkube.apiserver.admission import CREATE, AdmissionRequest

log = logging.getLogger(__name__)

STORAGECLASS_PREFIX = "/registry/storageclasses/"
WATCH_RETRY_SECONDS = 1.0


def default_class_name(classes: list[dict]) -> Optional[str]:
    """The default class's name among ``classes``: the newest default (then by name), or None."""
    defaults = [c for c in classes if storage.is_default_class(c)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp") or "", c["metadata"]["name"]))
    return newest["metadata"]["name"]


def _is_create_of(request: AdmissionRequest, kind: str) -> bool:
    return request.operation == CREATE and request.kind == kind and not request.subresource \
        and isinstance(request.obj, dict)


class DefaultStorageClass:
    """See the module docstring. ``storage`` is the apiserver's store (it feeds the cache)."""

    name = "DefaultStorageClass"

    def __init__(self, store, prefix: str = STORAGECLASS_PREFIX):
        self.store, self.prefix = store, prefix
        self.classes: dict[str, dict] = {}
        self._watcher: Optional[asyncio.Task] = None

    async def start(self) -> None:
        listed = await self.store.list(self.prefix)
        self.classes = {c["metadata"]["name"]: c for c in listed.items}
        self._watcher = asyncio.create_task(self._follow(listed.revision))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def _follow(self, revision: int) -> None:
        """Keep ``classes`` current from a watch; relist after any failure."""
        while True:
            try:
                async with contextlib.aclosing(self.store.watch(self.prefix, revision)) as events:
                    async for event in events:
                        name = event.object["metadata"]["name"]
                        if event.type == "DELETED":
                            self.classes.pop(name, None)
                        else:
                            self.classes[name] = event.object
                        revision = event.revision
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("DefaultStorageClass watch failed (%s); relisting", exc)
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    listed = await self.store.list(self.prefix)
                    self.classes = {c["metadata"]["name"]: c for c in listed.items}
                    revision = listed.revision

    def mutate(self, request: AdmissionRequest) -> None:
        if not _is_create_of(request, "PersistentVolumeClaim"):
            return
        claim = request.obj
        spec = claim.get("spec")
        annotations = (claim.get("metadata") or {}).get("annotations") or {}
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None \
                or storage.ANN_BETA_STORAGE_CLASS in annotations:
            return
        name = default_class_name(list(self.classes.values()))
        if name is not None:
            spec["storageClassName"] = name


class StorageObjectInUseProtection:
    """See the module docstring."""

    name = "StorageObjectInUseProtection"

    FINALIZERS = {"PersistentVolumeClaim": storage.PVC_PROTECTION, "PersistentVolume": storage.PV_PROTECTION}

    def mutate(self, request: AdmissionRequest) -> None:
        finalizer = self.FINALIZERS.get(request.kind)
        if finalizer is None or not _is_create_of(request, request.kind):
            return
        meta = request.obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return
        finalizers = meta.get("finalizers")
        if finalizers is None:
            meta["finalizers"] = [finalizer]
        elif isinstance(finalizers, list) and finalizer not in finalizers:
            finalizers.append(finalizer)


def storage_admission_plugins(store) -> list:
    """Both plugins, in kube-apiserver's order."""
    return [DefaultStorageClass(store), StorageObjectInUseProtection()]
