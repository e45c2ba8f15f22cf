"""Namespaces: the system ones, admission of new objects, and termination.

- ``ensure_system_namespaces`` creates default, kube-system, kube-public and
  kube-node-lease when missing (at startup).
- ``check_writable`` refuses objects in a missing namespace (404 like
  Kubernetes' NamespaceLifecycle admission) or a terminating one (403). Known
  active namespaces are remembered from a watch so creates cost no extra read.
- Deleting a namespace marks it Terminating, then a background task deletes
  everything in it and finally the namespace itself. Terminating namespaces
  found at startup are resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Optional

from pkube.api import meta
from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import Registry, ResourceInfo
from pkube.apiserver import errors
from pkube.apiserver.deletion import DeleteOptions
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import translate
from pkube.apiserver.storage.interface import KeyExists, NotFound, Storage

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE = ("default", "kube-system", "kube-public")
CLEANUP_RETRY_SECONDS = 0.5
WATCH_RETRY_SECONDS = 1.0


def namespace_object(name: str) -> dict:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    return meta.stamp_new(obj)


def terminating(obj: dict, now: datetime.datetime) -> dict:
    """Pure: the namespace marked for deletion (phase Terminating)."""
    new = deep_copy(obj)
    new["metadata"].setdefault("deletionTimestamp", meta.now_rfc3339(now))
    new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
    new.setdefault("status", {})["phase"] = "Terminating"
    return new


class Namespaces:
    """Namespace lifecycle for one apiserver. ``start()``/``stop()`` own the tasks."""

    def __init__(self, storage: Storage, registry: Registry):
        self.storage, self.registry = storage, registry
        self.info = registry.by_kind("Namespace", "")
        self.active: set[str] = set()
        self.deleter = None  # set by create_app: a deletion.Deleter
        self._tasks: dict[str, asyncio.Task] = {}
        self._watcher: Optional[asyncio.Task] = None

    async def start(self) -> None:
        """Create the system namespaces, resume terminations, follow namespace changes."""
        for name in SYSTEM_NAMESPACES:
            with contextlib.suppress(KeyExists):
                await self.storage.create(self.info.key(None, name), namespace_object(name))
        listed = await self.storage.list(self.info.key_prefix())
        self._absorb(listed.items)
        for obj in listed.items:
            if obj.get("status", {}).get("phase") == "Terminating":
                self._schedule(meta.name_of(obj))
        self._watcher = asyncio.create_task(self._follow(listed.revision))

    async def stop(self) -> None:
        tasks = [t for t in [self._watcher, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _absorb(self, objects: list[dict]) -> None:
        for obj in objects:
            self._note(obj, deleted=False)

    def _note(self, obj: dict, deleted: bool) -> None:
        name = meta.name_of(obj)
        if deleted or obj.get("status", {}).get("phase") == "Terminating":
            self.active.discard(name)
        else:
            self.active.add(name)

    async def _follow(self, revision: int) -> None:
        """Keep ``active`` current from a watch; relist after any failure."""
        while True:
            try:
                async with contextlib.aclosing(self.storage.watch(self.info.key_prefix(), revision)) as events:
                    async for event in events:
                        self._note(event.object, event.type == "DELETED")
                        revision = event.revision
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("namespace watch failed (%s); relisting", exc)
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    listed = await self.storage.list(self.info.key_prefix())
                    self.active = set()
                    self._absorb(listed.items)
                    revision = listed.revision

    async def check_writable(self, namespace: str, info: ResourceInfo, name: str) -> None:
        """404 when ``namespace`` does not exist, 403 when it is terminating."""
        if namespace in self.active:
            return
        try:
            obj = await self.storage.get(self.info.key(None, namespace))
        except NotFound:
            raise errors.namespace_not_found(namespace) from None
        if obj.get("status", {}).get("phase") == "Terminating":
            raise errors.forbidden(f'{errors.qualified(info)} "{name}" is forbidden: unable to create new '
                                   f"content in namespace {namespace} because it is being terminated")
        self.active.add(namespace)

    async def begin_termination(self, target: Target, current: dict, opts) -> dict:
        """DELETE of a namespace: mark it Terminating and clean it up in the background."""
        if target.name in UNDELETABLE:
            raise errors.forbidden(f'namespaces "{target.name}" is forbidden: this namespace may not be deleted')
        now = datetime.datetime.now(datetime.timezone.utc)
        if opts.dry_run:
            return terminating(current, now)
        with translate(self.info, target.name):
            marked = await self.storage.guaranteed_update(target.key, lambda obj: terminating(obj, now),
                                                          opts.preconditions)
        self.active.discard(target.name)
        self._schedule(target.name)
        return marked

    def _schedule(self, name: str) -> None:
        if name not in self._tasks or self._tasks[name].done():
            self._tasks[name] = asyncio.create_task(self._finalize(name))

    async def _finalize(self, name: str) -> None:
        """Delete everything in namespace ``name``, then the namespace itself."""
        while True:
            try:
                if await self._empty_once(name):
                    await self._remove_namespace(name)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying, as the namespace controller does
                log.warning("cleaning namespace %s: %s", name, exc)
            await asyncio.sleep(CLEANUP_RETRY_SECONDS)

    async def _empty_once(self, name: str) -> bool:
        """One pass deleting what is in the namespace; True when nothing is left."""

        empty = True
        for info in self.registry.resources:
            if not info.namespaced:
                continue
            listed = await self.storage.list(info.key_prefix(name))
            if listed.items:
                empty = False
                target = Target(info, name)
                await self.deleter.delete_collection(target, listed.items, DeleteOptions())
        return empty

    async def _remove_namespace(self, name: str) -> None:
        key = self.info.key(None, name)
        try:
            obj = await self.storage.get(key)
        except NotFound:
            return
        if obj["metadata"].get("finalizers"):
            raise RuntimeError(f"namespace {name} waits for finalizers {obj['metadata']['finalizers']}")
        with contextlib.suppress(NotFound):
            await self.storage.delete(key)
        self.active.discard(name)
