"""Informers: list, then watch from the list's resourceVersion, into a local cache.

Concurrency model (for every component: scheduler, controllers, kubelet):
asyncio, one event loop per process. An informer is one task (``run()``);
its handlers are plain functions called on the loop and must only enqueue
(workqueue keys, scheduler queue), never block or await. The ``Store`` is
also lock-protected so a thread may read it.

Reflector contract, as client-go's:
- list (paged), replace the cache, call on_add / on_update / on_delete for
  the differences, then ``has_synced()`` turns True;
- watch from the list's resourceVersion, applying each event to the cache
  and calling the handler; a stream the server ends is re-opened from the
  last resourceVersion seen (BOOKMARKs included);
- 410 Gone (HTTP or ERROR event) means the version is compacted: list again;
- any other error: wait ``retry_delay`` on the clock, then re-watch (or re-list);
  so does a watch the server ends without sending anything (no tight loop);
- every ``resync_period`` seconds (0 = never) on_update(obj, obj) is called
  for every cached object, so level-triggered controllers revisit them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from pkube.client.clock import Clock
from pkube.client.errors import ApiError, Gone
from pkube.client.store import IndexFunc, Store, object_key

log = logging.getLogger(__name__)


class Handlers:
    """One set of event callbacks; any may be None."""

    def __init__(self, on_add: Optional[Callable] = None, on_update: Optional[Callable] = None,
                 on_delete: Optional[Callable] = None):
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete


class Informer:
    """Keeps ``store`` equal to the server's view of one resource (optionally filtered)."""

    def __init__(self, client, resource, namespace: Optional[str] = None,
                 label_selector: Optional[str] = None, field_selector: Optional[str] = None,
                 resync_period: float = 0.0, clock: Optional[Clock] = None,
                 indexers: Optional[dict[str, IndexFunc]] = None,
                 watch_timeout: int = 300, retry_delay: float = 1.0):
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.clock = clock or Clock()
        self.store = Store(indexers)
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.resource_version: Optional[str] = None
        self._handlers: list[Handlers] = []
        self._synced = asyncio.Event()

    def add_handlers(self, on_add=None, on_update=None, on_delete=None) -> None:
        """Register callbacks: on_add(obj), on_update(old, new), on_delete(last_known)."""
        self._handlers.append(Handlers(on_add, on_update, on_delete))

    def has_synced(self) -> bool:
        """True once the first list is in the cache and its handlers have run."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def run(self) -> None:
        """Run until cancelled; never returns otherwise."""
        resync = asyncio.ensure_future(self._resync_loop()) if self.resync_period > 0 else None
        try:
            await self._reflect()
        finally:
            if resync is not None:
                resync.cancel()

    async def _reflect(self) -> None:
        rv: Optional[str] = None
        while True:
            try:
                if rv is None:
                    rv = await self.relist()
                new_rv = await self.watch_once(rv)
                if new_rv == rv:
                    await self.clock.sleep(self.retry_delay)
                rv = new_rv
            except Gone:
                log.info("%s: resourceVersion %s is gone, relisting", self.resource.plural, rv)
                rv = None
            except (ApiError, ValueError) as err:
                log.warning("%s: %s; retrying in %ss", self.resource.plural, err, self.retry_delay)
                await self.clock.sleep(self.retry_delay)

    async def relist(self) -> str:
        """List everything, replace the cache, notify the differences; the list's revision."""
        listing = await self.client.list_all(self.resource, self.namespace,
                                             self.label_selector, self.field_selector)
        fresh = {object_key(obj): _with_kind(obj, listing) for obj in listing.get("items") or []}
        for key in self.store.keys():
            if key not in fresh:
                self._notify_delete(self.store.remove(key))
        for obj in fresh.values():
            self._notify_put(self.store.put(obj), obj)
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion") or "0"
        self._synced.set()
        return self.resource_version

    async def watch_once(self, rv: str) -> str:
        """Apply the events of one watch stream from ``rv``; the last resourceVersion seen when it
        ends. Raises Gone when ``rv`` was compacted away (``run()`` then relists)."""
        events = self.client.watch(self.resource, self.namespace, rv, self.label_selector,
                                   self.field_selector, self.watch_timeout)
        async for kind, obj in events:
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            self.resource_version = rv
            self.apply_event(kind, obj)
        return rv

    def apply_event(self, kind: str, obj: dict) -> None:
        """Apply one watch event to the cache and call the handlers."""
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            old = self.store.remove(object_key(obj))
            self._notify_delete(old if old is not None else obj)
            return
        self._notify_put(self.store.put(obj), obj)

    def resync(self) -> None:
        """Call on_update(obj, obj) for every cached object."""
        for obj in self.store.list():
            self._call("on_update", obj, obj)

    async def _resync_loop(self) -> None:
        while True:
            await self.clock.sleep(self.resync_period)
            if self.has_synced():
                self.resync()

    def _notify_put(self, old: Optional[dict], new: dict) -> None:
        if old is None:
            self._call("on_add", new)
        else:
            self._call("on_update", old, new)

    def _notify_delete(self, old: Optional[dict]) -> None:
        if old is not None:
            self._call("on_delete", old)

    def _call(self, which: str, *args) -> None:
        for handlers in self._handlers:
            fn = getattr(handlers, which)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:  # a handler bug must not stop the informer
                log.exception("%s handler %s failed", self.resource.plural, which)


def _with_kind(obj: dict, listing: dict) -> dict:
    """List items lack kind/apiVersion on the wire; restore them from the list's kind."""
    if "kind" not in obj and listing.get("kind", "").endswith("List"):
        obj["kind"] = listing["kind"][:-4]
        obj.setdefault("apiVersion", listing.get("apiVersion"))
    return obj
