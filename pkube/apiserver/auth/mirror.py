"""An in-memory copy of the objects under one store prefix, kept from a list and a watch:
what the authorizers and admission plugins read instead of the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable, Optional

from pkube.apiserver.storage.interface import Storage

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0

Changed = Callable[[Optional[dict], Optional[dict]], None]


class Mirror:
    """The objects under ``prefix`` by key. ``changed(old, new)`` is called on the event loop
    for every change (old None: added; new None: deleted) and, after a relist, for every
    difference. ``start`` returns once the first list is in."""

    def __init__(self, storage: Storage, prefix: str, changed: Changed = lambda old, new: None):
        self.storage, self.prefix, self.changed = storage, prefix, changed
        self.objects: dict[str, dict] = {}
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        revision = await self._relist()
        self._task = asyncio.create_task(self._follow(revision))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _relist(self) -> int:
        listed = await self.storage.list(self.prefix)
        fresh = {_key(self.prefix, obj): obj for obj in listed.items}
        for key in set(self.objects) - set(fresh):
            self.changed(self.objects.pop(key), None)
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None or old.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.objects[key] = obj
                self.changed(old, obj)
        return listed.revision

    async def _follow(self, revision: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.storage.watch(self.prefix, revision)) as events:
                    async for event in events:
                        self._apply(event.type, event.object)
                        revision = event.revision
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("watch of %s failed (%s); relisting", self.prefix, exc)
                await asyncio.sleep(RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    revision = await self._relist()

    def _apply(self, kind: str, obj: dict) -> None:
        key = _key(self.prefix, obj)
        old = self.objects.get(key)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.changed(old, None)
        else:
            self.objects[key] = obj
            self.changed(old, obj)


def _key(prefix: str, obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name', '')}" if namespace else meta.get("name", "")
