"""Watch streaming: newline-delimited JSON events, as Kubernetes sends them.

Events come from the watch cache's subscriber (``storage.subscribe``: one etcd
watch per resource for every HTTP watcher), read in batches, or from any
``storage.watch`` through a bounded pump. Each event is serialized once for all
watchers (``wire_line`` on the shared event; ``EventEncoder`` for translated
types). After each send a watcher waits ``COALESCE_SECONDS`` so that bursts
leave as few large writes (a 10 ms latency for a 5x fan-out throughput).
Selectors are applied per watcher, turning an update that moves an object into
(out of) the selection into ADDED (DELETED), like Kubernetes. A compacted start
revision ends the stream with an ERROR event carrying a 410 Status; so does a
watcher that fell behind the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import AsyncIterator, Callable, Optional

from pkube.api.kinds import ResourceInfo
from pkube.apiserver import errors
from pkube.api.jsonvalue import dumps_sorted
from pkube.apiserver.encoding import dumps, go_escaped
from pkube.apiserver.listing import ListOptions, list_objects
from pkube.apiserver.storage.interface import Compacted, Storage, WatchEvent

try:
    from pkube.apiserver.storage.events import wire_line
except ImportError:  # a store without shared event encoding
    wire_line = None

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024
BATCH_SIZE = 1000
COALESCE_SECONDS = 0.01  # after a send, let events gather this long: fewer, larger writes
ENCODED_CACHE_SIZE = 8192


class EventEncoder:
    """Serializes watch events once, shared by every watcher of one apiserver."""

    def __init__(self, size: int = ENCODED_CACHE_SIZE):
        self.size = size
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()

    def encode(self, event_type: str, obj: dict, key: str = "", revision: int = 0,
               unstructured: bool = False) -> bytes:
        """One line: {"type":...,"object":...}\\n (the object's keys sorted when ``unstructured``).
        Cached by (key, revision, type) when known."""
        if not key:
            return _line(event_type, obj, unstructured)
        cache_key = (key, revision, event_type, unstructured)
        line = self._cache.get(cache_key)
        if line is None:
            line = self._cache[cache_key] = _line(event_type, obj, unstructured)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return line


def _line(event_type: str, obj: dict, unstructured: bool = False) -> bytes:
    """A metav1.WatchEvent line; ``unstructured`` (a custom resource): the object's keys sorted."""
    body = dumps_sorted(obj) if unstructured else dumps(obj)
    return b'{"type":"' + event_type.encode() + b'","object":' + go_escaped(body) + b"}\n"


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
                 encoder: EventEncoder, bookmark_interval: float,
                 transform: Optional[Callable[[dict], dict]] = None, unstructured: bool = False):
        self.storage, self.info, self.prefix, self.opts = storage, info, prefix, opts
        self.unstructured = unstructured  # custom objects: keys sorted (and not the shared wire_line)
        self.transform = transform  # e.g. object -> Table: then events are encoded per watcher
        self.encoder, self.bookmark_interval = encoder, bookmark_interval
        self.initial: list[dict] = []
        self.revision = 0
        self.tracker: Optional[SelectionTracker] = None
        self.error: Optional[errors.ApiError] = None
        self.coalesce_seconds = COALESCE_SECONDS

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
            yield b"".join(self._line("ADDED", o) for o in self.initial)
        try:
            source = await _open(self.storage, self.prefix, self.revision)
        except Exception as exc:  # noqa: BLE001 - Compacted or an unavailable store ends the stream
            yield self._error_line(self._failure(exc))
            return
        try:
            async for chunk in self._drain(source):
                yield chunk
        finally:
            await source.aclose()

    async def _drain(self, source) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self.opts.timeout_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            wait = min(left, self.bookmark_interval) if self.opts.allow_bookmarks else left
            try:
                async with asyncio.timeout(wait):
                    batch = await source.batch(BATCH_SIZE)
            except TimeoutError:
                if self.opts.allow_bookmarks and time.monotonic() < deadline:
                    yield self._bookmark(source)
                continue
            except StopAsyncIteration:
                return
            except Exception as exc:  # noqa: BLE001 - the source failed: tell the client, end
                yield self._error_line(self._failure(exc))
                return
            chunk = self._encode_batch(batch)
            if chunk:
                yield chunk
                await asyncio.sleep(self.coalesce_seconds)

    def _encode_batch(self, batch: list[WatchEvent]) -> bytes:
        lines = []
        for event in batch:
            self.revision = max(self.revision, event.revision)
            event_type = event.type if self.tracker is None else self.tracker.translate(event)
            if event_type is not None and self.transform is not None:
                lines.append(_line(event_type, self.transform(event.object), self.unstructured))
            elif event_type == event.type and wire_line is not None and not self.unstructured:
                lines.append(wire_line(event))
            elif event_type is not None:
                lines.append(self.encoder.encode(event_type, event.object, event.key, event.revision,
                                                 self.unstructured))
        return b"".join(lines)

    def _line(self, event_type: str, obj: dict) -> bytes:
        if self.transform is not None:
            return _line(event_type, self.transform(obj), self.unstructured)
        return self.encoder.encode(event_type, obj, unstructured=self.unstructured)

    def _failure(self, exc: BaseException) -> errors.ApiError:
        if isinstance(exc, Compacted):
            return _expired(exc)
        log.info("watch on %s closed: %r", self.prefix, exc)
        return errors.gone(f"the watch was closed: {exc}")

    def _bookmark(self, source) -> bytes:
        revision = max(self.revision, getattr(source, "bookmark_revision", lambda: 0)())
        obj = {"kind": self.info.kind, "apiVersion": self.info.api_version,
               "metadata": {"resourceVersion": str(revision)}}
        return _line("BOOKMARK", obj, self.unstructured)

    @staticmethod
    def _error_line(err: errors.ApiError) -> bytes:
        return _line("ERROR", err.status())


async def _open(storage: Storage, prefix: str, revision: int):
    """A source with ``batch(n)`` (cancel-safe) and ``aclose()``: the watch cache's
    subscriber when the storage has one, else a pumped ``storage.watch``."""
    subscribe = getattr(storage, "subscribe", None)
    if subscribe is not None:
        source = await subscribe(prefix, revision)
        if hasattr(source, "batch"):
            return source
        return _Pumped(source)
    return _Pumped(storage.watch(prefix, revision))


class _Pumped:
    """Makes any async iterator of events cancel-safe: a task moves its events into a
    bounded queue (back-pressure reaches the producer), ``batch`` drains the queue."""

    def __init__(self, events):
        self._events = events
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for event in self._events:
                await self._queue.put(event)
            await self._queue.put(StopAsyncIteration())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            await self._queue.put(exc)

    async def batch(self, max_events: int) -> list[WatchEvent]:
        """At least one event, at most ``max_events``; raises what the producer raised."""
        events = [await self._queue.get()]
        while not self._queue.empty() and len(events) < max_events:
            events.append(self._queue.get_nowait())
        failures = [e for e in events if isinstance(e, BaseException)]
        if failures:
            good = events[:events.index(failures[0])]
            if good:
                self._queue = _requeue(self._queue, failures[0])
                return good
            raise failures[0]
        return events

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            await self._events.aclose()


def _requeue(queue: asyncio.Queue, failure: BaseException) -> asyncio.Queue:
    """A queue holding only ``failure`` (the producer has stopped after raising it)."""
    fresh: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
    fresh.put_nowait(failure)
    return fresh


def _expired(exc: Compacted) -> errors.ApiError:
    return errors.expired(f"too old resource version: {exc.revision} ({exc.compact_revision})")


def _unpaged(opts: ListOptions) -> ListOptions:
    return ListOptions(opts.label_selector, opts.field_selector)
