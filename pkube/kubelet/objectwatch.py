"""The Secrets and ConfigMaps the pods of this node read, each watched on its own.

Like the kubelet's Watch change-detection strategy: one field-selected watch per object a
pod references (``metadata.name=<name>`` in its namespace), shared by every pod that reads
it and stopped when the last one is gone. A node never lists or watches all Secrets — the
Node authorizer allows it exactly the objects of its own pods — and a change to one of them
reaches the pods that use it within the watch's latency.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from pkube.client.errors import NotFound
from pkube.client.informer import Informer
from pkube.client.resources import CONFIGMAPS, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, SECRETS

log = logging.getLogger(__name__)

# PersistentVolumeClaims and PersistentVolumes are read (never watched) by the volume setup.
RESOURCES = {"Secret": SECRETS, "ConfigMap": CONFIGMAPS, "PersistentVolumeClaim": PERSISTENTVOLUMECLAIMS,
             "PersistentVolume": PERSISTENTVOLUMES}
Key = tuple[str, str, str]   # (kind, namespace, name)


@dataclass
class _Watched:
    informer: Informer
    task: asyncio.Future
    readers: set[str] = field(default_factory=set)


class ReferencedObjects:
    """``track(uid, namespace, refs)`` when a pod is seen or changes, ``untrack(uid)`` when
    it is gone; ``get`` answers from the object's watch once it has synced, from a GET
    before (None when the object does not exist). ``on_change(kind, obj)`` is called when
    a watched object appears or changes."""

    def __init__(self, client, on_change: Callable[[str, dict], None]):
        self.client = client
        self.on_change = on_change
        self._watched: dict[Key, _Watched] = {}
        self._keys_of: dict[str, set[Key]] = {}

    def track(self, uid: str, namespace: str, refs: set[tuple[str, str]]) -> None:
        """Pod ``uid`` (in ``namespace``) now reads exactly ``refs`` {(kind, name)}."""
        keys = {(kind, namespace, name) for kind, name in refs if kind in RESOURCES}
        old = self._keys_of.get(uid, set())
        self._keys_of[uid] = keys
        for key in keys - old:
            self._watch(key).readers.add(uid)
        for key in old - keys:
            self._release(key, uid)

    def untrack(self, uid: str) -> None:
        """Pod ``uid`` is gone: stop the watches no other pod needs."""
        for key in self._keys_of.pop(uid, set()):
            self._release(key, uid)

    async def get(self, kind: str, namespace: str, name: str) -> Optional[dict]:
        watched = self._watched.get((kind, namespace, name))
        if watched is not None and watched.informer.has_synced():
            return watched.informer.store.get(f"{namespace}/{name}")
        try:
            return await self.client.get(RESOURCES[kind], name, namespace)
        except NotFound:
            return None

    def watched(self) -> set[Key]:
        """The objects watched now (for tests and debugging)."""
        return set(self._watched)

    def stop(self) -> None:
        """Cancel every watch."""
        for watched in self._watched.values():
            watched.task.cancel()
        self._watched.clear()
        self._keys_of.clear()

    def _watch(self, key: Key) -> _Watched:
        watched = self._watched.get(key)
        if watched is None:
            kind, namespace, name = key
            informer = Informer(self.client, RESOURCES[kind], namespace=namespace,
                                field_selector=f"metadata.name={name}")
            changed = lambda obj, kind=kind: self.on_change(kind, obj)   # noqa: E731
            informer.add_handlers(changed, lambda _old, new: changed(new), None)
            watched = self._watched[key] = _Watched(informer, asyncio.ensure_future(informer.run()))
        return watched

    def _release(self, key: Key, uid: str) -> None:
        watched = self._watched.get(key)
        if watched is None:
            return
        watched.readers.discard(uid)
        if not watched.readers:
            watched.task.cancel()
            del self._watched[key]
