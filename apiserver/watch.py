"""Watch streaming: newline-delimited JSON events, as Kubernetes sends them.

Events come from ``storage.watch`` (the watch cache when the storage is a
cacher: one etcd watch per resource for every HTTP watcher). Each event is
serialized once for all watchers (``EventEncoder``). Selectors are applied
per watcher, turning an update that moves an object into (out of) the
selection into ADDED (DELETED), like Kubernetes. A compacted start revision
ends the stream with an ERROR event carrying a 410 Status; so does a watcher
that fell behind the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import AsyncIterator, Optional

from api.kinds import ResourceInfo
from apiserver import errors
from apiserver.encoding import dumps
from apiserver.listing import ListOptions, list_objects
from apiserver.storage.interface import Compacted, Storage, WatchEvent

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024
ENCODED_CACHE_SIZE = 8192


class EventEncoder:
    """Serializes watch events once, shared by every watcher of one apiserver."""

    def __init__(self, size: int = ENCODED_CACHE_SIZE):
        self.size = size
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()

    def encode(self, event_type: str, obj: dict, key: str = "", revision: int = 0) -> bytes:
        """One line: {"type":...,"object":...}\\n. Cached by (key, revision, type) when known."""
        if not key:
            return _line(event_type, obj)
        cache_key = (key, revision, event_type)
        line = self._cache.get(cache_key)
        if line is None:
            line = self._cache[cache_key] = _line(event_type, obj)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return line


def _line(event_type: str, obj: dict) -> bytes:
    return b'{"type":"' + event_type.encode() + b'","object":' + dumps(obj) + b"}\n"


def _object_key(obj: dict) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return md.get("namespace", ""), md.get("name", "")


class SelectionTracker:
    """Which objects a selector-filtered watcher currently sees, to emit
    ADDED/DELETED when updates move objects in or out of its selection."""

    def __init__(self, info: ResourceInfo, opts: ListOptions, initial: list[dict]):
        self.info, self.opts = info, opts
        self.seen = {_object_key(o) for o in initial if opts.matches(info, o)}

    def translate(self, event: WatchEvent) -> Optional[str]:
        """The event type this watcher must see, or None to skip the event."""
        key = _object_key(event.object)
        was = key in self.seen
        now = event.type != "DELETED" and self.opts.matches(self.info, event.object)
        if now:
            self.seen.add(key)
            return "MODIFIED" if was and event.type == "MODIFIED" else "ADDED"
        self.seen.discard(key)
        return "DELETED" if was else None


class WatchStream:
    """One HTTP watcher. ``start()`` does the work that may still fail with a plain
    HTTP error; ``stream()`` yields the response body."""

    def __init__(self, storage: Storage, info: ResourceInfo, prefix: str, opts: ListOptions,
                 encoder: EventEncoder, bookmark_interval: float):
        self.storage, self.info, self.prefix, self.opts = storage, info, prefix, opts
        self.encoder, self.bookmark_interval = encoder, bookmark_interval
        self.initial: list[dict] = []
        self.revision = 0
        self.tracker: Optional[SelectionTracker] = None
        self.error: Optional[errors.ApiError] = None

    async def start(self) -> None:
        """Read the initial state (rv absent/0) or the selection at the start revision."""
        rv = self.opts.resource_version
        if rv in (None, "0"):
            listed = await list_objects(self.storage, self.info, self.prefix, _unpaged(self.opts))
            self.initial, self.revision = listed.items, listed.revision
            seed = self.initial
        else:
            self.revision = int(rv)
            seed = []
            if not self.opts.selects_all:
                try:
                    seed = (await self.storage.list(self.prefix, self.revision)).items
                except Compacted as exc:
                    self.error = _expired(exc)
        if not self.opts.selects_all:
            self.tracker = SelectionTracker(self.info, self.opts, seed)

    async def stream(self) -> AsyncIterator[bytes]:
        if self.error is not None:
            yield self._error_line(self.error)
            return
        if self.initial:
            yield b"".join(self.encoder.encode("ADDED", o) for o in self.initial)
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        pump = asyncio.create_task(self._pump(queue))
        try:
            async for chunk in self._drain(queue):
                yield chunk
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump

    async def _pump(self, queue: asyncio.Queue) -> None:
        try:
            async with contextlib.aclosing(self.storage.watch(self.prefix, self.revision)) as events:
                async for event in events:
                    await queue.put(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which ends the stream
            await queue.put(exc)

    async def _drain(self, queue: asyncio.Queue) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self.opts.timeout_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            wait = min(left, self.bookmark_interval) if self.opts.allow_bookmarks else left
            try:
                first = await asyncio.wait_for(queue.get(), wait)
            except asyncio.TimeoutError:
                if self.opts.allow_bookmarks and time.monotonic() < deadline:
                    yield self._bookmark()
                continue
            batch = [first]
            while not queue.empty() and len(batch) < QUEUE_SIZE:
                batch.append(queue.get_nowait())
            chunk, failure = self._encode_batch(batch)
            if chunk:
                yield chunk
            if failure is not None:
                yield self._error_line(failure)
                return

    def _encode_batch(self, batch: list) -> tuple[bytes, Optional[errors.ApiError]]:
        lines = []
        for item in batch:
            if isinstance(item, BaseException):
                return b"".join(lines), self._failure(item)
            self.revision = max(self.revision, item.revision)
            event_type = item.type if self.tracker is None else self.tracker.translate(item)
            if event_type is not None:
                lines.append(self.encoder.encode(event_type, item.object, item.key, item.revision))
        return b"".join(lines), None

    def _failure(self, exc: BaseException) -> errors.ApiError:
        if isinstance(exc, Compacted):
            return _expired(exc)
        log.info("watch on %s closed: %r", self.prefix, exc)
        return errors.gone(f"the watch was closed: {exc}")

    def _bookmark(self) -> bytes:
        obj = {"kind": self.info.kind, "apiVersion": self.info.api_version,
               "metadata": {"resourceVersion": str(self.revision)}}
        return _line("BOOKMARK", obj)

    @staticmethod
    def _error_line(err: errors.ApiError) -> bytes:
        return _line("ERROR", err.status())


def _expired(exc: Compacted) -> errors.ApiError:
    return errors.expired(f"too old resource version: {exc.revision} ({exc.compact_revision})")


def _unpaged(opts: ListOptions) -> ListOptions:
    return ListOptions(opts.label_selector, opts.field_selector)
