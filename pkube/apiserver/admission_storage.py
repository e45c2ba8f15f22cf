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


def newest_default(classes: list[dict], is_default) -> Optional[str]:
    """The name of the newest class ``is_default`` accepts (by name on equal times), or None:
    how kube-apiserver's DefaultStorageClass and DefaultIngressClass choose among several."""
    defaults = sorted((c for c in classes if is_default(c)), key=lambda c: c["metadata"]["name"])
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: c["metadata"].get("creationTimestamp") or "")   # the first of equals
    return newest["metadata"]["name"]


def default_class_name(classes: list[dict]) -> Optional[str]:
    """The default StorageClass's name among ``classes``, or None."""
    return newest_default(classes, storage.is_default_class)


def is_create_of(request: AdmissionRequest, kind: str) -> bool:
    return request.operation == CREATE and request.kind == kind and not request.subresource \
        and isinstance(request.obj, dict)


class WatchedObjects:
    """The objects under ``prefix``, kept by ``key`` from a watch of the store between ``start``
    and ``stop``, for a plugin's synchronous hooks (they must not do I/O). A subclass names the
    plugin (``name``) and its ``prefix``."""

    name = prefix = ""

    def __init__(self, store, prefix: Optional[str] = None):
        self.store, self.prefix = store, prefix or self.prefix
        self.objects: dict = {}
        self._watcher: Optional[asyncio.Task] = None

    @staticmethod
    def key(obj: dict):
        return obj["metadata"]["name"]

    def _absorb(self, objects: list[dict]) -> None:
        self.objects = {self.key(o): o for o in objects}

    async def start(self) -> None:
        listed = await self.store.list(self.prefix)
        self._absorb(listed.items)
        self._watcher = asyncio.create_task(self._follow(listed.revision))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def _follow(self, revision: int) -> None:
        """Keep ``objects`` current from a watch; relist after any failure."""
        while True:
            try:
                async with contextlib.aclosing(self.store.watch(self.prefix, revision)) as events:
                    async for event in events:
                        if event.type == "DELETED":
                            self.objects.pop(self.key(event.object), None)
                        else:
                            self.objects[self.key(event.object)] = event.object
                        revision = event.revision
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("%s watch failed (%s); relisting", self.name, exc)
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    listed = await self.store.list(self.prefix)
                    self._absorb(listed.items)
                    revision = listed.revision


class DefaultClass(WatchedObjects):
    """A plugin that gives a new ``kind`` without ``spec.<class_field>`` (and without the
    ``opt_out`` annotation) the newest class ``is_default`` accepts, among the watched classes
    under ``prefix``. A subclass names the plugin and sets these attributes."""

    kind = class_field = opt_out = ""
    is_default = staticmethod(lambda obj: False)

    def mutate(self, request: AdmissionRequest) -> None:
        if not is_create_of(request, self.kind):
            return
        spec = request.obj.get("spec")
        annotations = (request.obj.get("metadata") or {}).get("annotations") or {}
        if not isinstance(spec, dict) or spec.get(self.class_field) is not None or self.opt_out in annotations:
            return
        name = newest_default(list(self.objects.values()), self.is_default)
        if name is not None:
            spec[self.class_field] = name


class DefaultStorageClass(DefaultClass):
    """See the module docstring. ``store`` is the apiserver's store (it feeds the cache)."""

    name, prefix, kind = "DefaultStorageClass", STORAGECLASS_PREFIX, "PersistentVolumeClaim"
    class_field, opt_out = "storageClassName", storage.ANN_BETA_STORAGE_CLASS
    is_default = staticmethod(storage.is_default_class)


class StorageObjectInUseProtection:
    """See the module docstring."""

    name = "StorageObjectInUseProtection"

    FINALIZERS = {"PersistentVolumeClaim": storage.PVC_PROTECTION, "PersistentVolume": storage.PV_PROTECTION}

    def mutate(self, request: AdmissionRequest) -> None:
        finalizer = self.FINALIZERS.get(request.kind)
        if finalizer is None or not is_create_of(request, request.kind):
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
