"""The watch cache: one etcd watch per resource feeds every watcher of it.

``WatchCache`` keeps the recent events of one resource prefix in a ring shared
by all its subscribers: the last ``fresh`` seconds of them (at least ``keep``,
at most ``window``), as kube-apiserver sizes its watch cache (75 s of events,
100 to 102,400). A subscriber is only a cursor into that ring, so a fan-out to
many watchers costs no per-watcher copy or queue, and memory is bounded by the
ring whatever the watchers do: at most ``window`` events, and at a steady write
rate no more than ``fresh`` seconds of them (an event holds its object decoded,
its stored bytes, the previous state's and its wire line: kilobytes). A subscriber more
than ``buffer`` events behind the newest (counting only events that arrived
after it subscribed) is closed with ``WatcherTooSlow`` — a ``Compacted``, so
the apiserver answers 410 and the client relists.

A watch from a revision older than the window catches up on a dedicated etcd
watch from that revision when etcd still has it (exact, and raising Compacted
otherwise), then continues from the ring once it reached the ring's oldest event:
a cache made at its first watch (a custom resource's, or one that failed) or at
start-up has no history, so a client that listed before it existed can still
resume, and etcd carries that extra watcher only while it catches up (every
watcher that failed over to a restarted apiserver used to keep one, for minutes,
in the member it talks to). ``CachedStorage.warm`` starts the caches of the resources a cluster
watches when the apiserver starts, as kube-apiserver does: a watch resumed on
another apiserver after a failover then finds its history there, and an
apiserver's memory does not step up when another one's watchers move to it.

Events are shared and must not be mutated (see pkube/apiserver/storage/events.py;
``wire_line(event)`` encodes each one once for all HTTP watchers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_right
import logging
from typing import AsyncIterator, Callable, Iterable, Optional

from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.apiserver.storage.events import StoredEvent
from pkube.apiserver.storage.interface import (
    Compacted, ListResult, Preconditions, Storage, StorageError, StorageUnavailable, UpdateFn,
)
from pkube.apiserver.storage.keys import matches, resource_prefix

DEFAULT_WINDOW = 10_000        # events a ring holds at most
DEFAULT_FRESH = 75.0           # seconds of events a ring keeps (kube-apiserver's eventFreshDuration)
DEFAULT_KEEP = 100             # events a ring keeps however old (kube-apiserver's lower bound)
DEFAULT_BUFFER = 1_000
DEFAULT_PROGRESS_INTERVAL = 5.0

log = logging.getLogger(__name__)


class WatcherTooSlow(Compacted):
    """A subscriber fell too far behind and was closed: relist, then watch again."""

    def __init__(self, key: str, revision: int, behind: int, buffer: int):
        StorageError.__init__(self, key, f"watcher of {key} fell {behind} events behind "
                                         f"(buffer {buffer}); relist and watch again")
        self.revision = revision
        self.compact_revision = revision


class EventRing:
    """Recent events, addressed by a global sequence number: at most ``capacity``; an event
    older than ``fresh`` seconds (by ``clock``, when it was appended) is dropped at the next
    append once more than ``keep`` are held. Dropped events are released (not referenced)."""

    def __init__(self, capacity: int, fresh: float = DEFAULT_FRESH, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.monotonic):
        self._slots: list[Optional[StoredEvent]] = [None] * capacity
        self._arrived: list[float] = [0.0] * capacity
        self.capacity = capacity
        self._fresh, self._keep, self._clock = fresh, min(keep, capacity), clock
        self.start = 0  # sequence number of the oldest event kept
        self.end = 0    # sequence number the next event will get

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, event: StoredEvent) -> Optional[StoredEvent]:
        """Add ``event``; return the newest event dropped to make room or for its age, if any."""
        now = self._clock()
        evicted = None
        while len(self) >= self._keep and self._arrived[self.start % self.capacity] < now - self._fresh:
            evicted = self._drop_oldest()
        if len(self) == self.capacity:
            evicted = self._drop_oldest()
        self._slots[self.end % self.capacity] = event
        self._arrived[self.end % self.capacity] = now
        self.end += 1
        return evicted

    def _drop_oldest(self) -> StoredEvent:
        slot = self.start % self.capacity
        event, self._slots[slot] = self._slots[slot], None
        self.start += 1
        return event

    def __getitem__(self, seq: int) -> StoredEvent:
        return self._slots[seq % self.capacity]

    def first_after(self, revision: int) -> int:
        """The sequence number of the first kept event with revision > ``revision``."""
        kept = range(self.start, self.end)
        return self.start + bisect_right(kept, revision, key=lambda seq: self[seq].revision)


class WatchCache:
    """Recent events of one prefix (e.g. ``/registry/pods/``) from one etcd watch.

    ``start()`` before ``watch()``; ``close()`` ends every subscriber (their
    iteration stops). When the etcd watch fails, every subscriber gets that
    error (StorageUnavailable or Compacted) and ``failed`` turns True: the
    owner replaces the cache. (etcd compacts a watch that is still catching
    up: compacting past the cache's start revision in its first ~100 ms
    fails it that way; the Compactor's window makes that impossible.)
    """

    def __init__(self, storage: EtcdStorage, prefix: str, window: int = DEFAULT_WINDOW,
                 progress_interval: float = DEFAULT_PROGRESS_INTERVAL):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.prefix = prefix
        self._storage = storage
        self._progress_interval = progress_interval
        self._ring = EventRing(window)
        self._floor = 0       # every event with revision > floor is in the ring
        self._revision = 0    # the newest revision the cache is complete up to
        self._changed = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._error: Optional[Exception] = None
        self._closed = False
        self._latest: dict[str, tuple[bytes, int]] = {}  # key -> (plain value, mod_revision)

    async def start(self) -> None:
        """Begin following etcd from its current revision."""
        self._floor = self._revision = await self._storage.current_revision()
        batches = self._storage.watch_batches(self.prefix, self._revision, self._progress_interval)
        self._task = asyncio.get_running_loop().create_task(self._follow(batches))

    @property
    def revision(self) -> int:
        """Newest revision up to which the cache has every event of its prefix
        (a valid BOOKMARK resourceVersion). It advances without events too:
        etcd is asked for progress every ``progress_interval`` seconds."""
        return self._revision

    async def wait_until(self, revision: int, timeout: float) -> bool:
        """Wait until the cache holds the events of its prefix up to
        ``revision``; False on timeout (a revision of another prefix never
        arrives), on failure or close."""
        async def caught_up() -> None:
            while self._revision < revision and not self.failed:
                await self._changed.wait()
        try:
            await asyncio.wait_for(caught_up(), timeout)
        except asyncio.TimeoutError:
            return False
        return self._revision >= revision

    @property
    def failed(self) -> bool:
        return self._error is not None or self._closed

    def watch(self, prefix: str, revision: int, buffer: int = DEFAULT_BUFFER) -> AsyncIterator[StoredEvent]:
        """Subscribe now to events under ``prefix`` (within this cache's) with
        revision > ``revision`` (0: from now).

        Replays what the window still holds, then live events, exactly once and
        in order. Older revisions come from a dedicated etcd watch (which raises
        Compacted when etcd no longer has them) until it reaches the window.
        """
        if not prefix.startswith(self.prefix):
            raise ValueError(f"{prefix} is not under {self.prefix}")
        if self._error is not None:
            return _Failed(self._error)
        if revision and revision < self._floor:
            return self._catch_up(prefix, revision, buffer)
        return Subscriber(self, prefix, revision, buffer)

    async def _catch_up(self, prefix: str, revision: int, buffer: int) -> AsyncIterator[StoredEvent]:
        """The events after ``revision`` from a dedicated etcd watch until it is complete up
        to the window's floor (an event or a progress notification says so), then the rest
        from the ring, as ``watch`` gives them."""
        batches = self._storage.watch_batches(prefix, revision, self._progress_interval)
        async with contextlib.aclosing(batches):
            async for batch, revision in batches:
                for event in batch:
                    yield event
                if revision >= self._floor:
                    break
            else:
                return      # the etcd watch ended before it caught up: so does this one
        rest = self.watch(prefix, revision, buffer)
        try:
            async for event in rest:
                yield event
        finally:
            await rest.aclose()

    async def close(self) -> None:
        """Stop following etcd and end every subscriber."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wake()

    async def _follow(self, batches) -> None:
        try:
            async with contextlib.aclosing(batches):
                async for batch, revision in batches:
                    self._append(batch, revision)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - handed to every subscriber
            self._error = e if isinstance(e, StorageError) else StorageUnavailable(self.prefix, str(e))
        finally:
            self._wake()

    def suggestion(self, key: str) -> Optional[tuple[bytes, int]]:
        """The newest state of ``key`` seen by this cache, (plain value, mod_revision),
        or None (not seen since the cache started, deleted, or the cache failed).
        Only a suggestion: it may already be stale."""
        return None if self.failed else self._latest.get(key)

    def _append(self, batch: list[StoredEvent], revision: int) -> None:
        for event in batch:
            if event.type == "DELETED" or event.value is None:
                self._latest.pop(event.key, None)
            else:
                self._latest[event.key] = (event.value, event.revision)
            evicted = self._ring.append(event)
            if evicted is not None:
                self._floor = evicted.revision
        self._revision = max(self._revision, revision)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed.clear()


class Subscriber:
    """One watcher's cursor into a WatchCache. Iterate it, or call ``batch()``.

    ``aclose()`` ends it (it holds nothing else). ``bookmark_revision()`` is
    the resourceVersion to put in a BOOKMARK now.
    """

    def __init__(self, cache: WatchCache, prefix: str, revision: int, buffer: int):
        ring = cache._ring
        self._cache = cache
        self._prefix = prefix
        self._buffer = buffer
        self._after = revision
        self._cursor = ring.first_after(revision) if revision else ring.end
        self._joined = ring.end
        self._delivered = revision or cache.revision
        self._closed = False

    def __aiter__(self) -> "Subscriber":
        return self

    async def __anext__(self) -> StoredEvent:
        if self._closed:
            raise StopAsyncIteration
        while True:
            event = self._next_ready()
            if event is not None:
                return event
            await self._wait()

    async def batch(self, max_events: int = 1000) -> list[StoredEvent]:
        """At least one event (waiting for it), at most ``max_events``: all that
        are ready. Raises StopAsyncIteration at the end, like ``__anext__``."""
        first = await self.__anext__()
        events = [first]
        while len(events) < max_events:
            event = self._next_ready()
            if event is None:
                break
            events.append(event)
        return events

    def bookmark_revision(self) -> int:
        """A revision such that every matching event up to it was delivered."""
        if self._cursor >= self._cache._ring.end:
            return max(self._cache.revision, self._delivered)
        return self._delivered

    async def aclose(self) -> None:
        self._closed = True

    def _next_ready(self) -> Optional[StoredEvent]:
        """The next matching event if one is in the ring; None when caught up."""
        ring = self._cache._ring
        while self._cursor < ring.end:
            self._check_lag(ring)
            event = ring[self._cursor]
            self._cursor += 1
            if event.revision > self._after and matches(self._prefix, event.key):
                self._delivered = event.revision
                return event
        return None

    def _check_lag(self, ring: EventRing) -> None:
        behind = ring.end - max(self._cursor, self._joined)
        if self._cursor < ring.start or behind > self._buffer:
            self._closed = True
            raise WatcherTooSlow(self._prefix, self._delivered, behind, self._buffer)

    async def _wait(self) -> None:
        if self._closed or self._cache._closed:
            raise StopAsyncIteration
        if self._cache._error is not None:
            raise self._cache._error
        await self._cache._changed.wait()


class _Failed:
    """An iterator that raises ``error`` at once (a failed cache's watchers)."""

    def __init__(self, error: Exception):
        self._error = error

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise self._error

    async def aclose(self) -> None:
        pass


class Watch:
    """The iterator ``CachedStorage.watch`` returns (subscribes lazily)."""

    def __init__(self, cached: "CachedStorage", prefix: str, revision: int, buffer: Optional[int]):
        self._subscribe = lambda: cached.subscribe(prefix, revision, buffer)
        self._events = None
        self._last = revision
        self._closed = False

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> StoredEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = await self._subscribe()
        event = await anext(self._events)
        self._last = event.revision
        return event

    def bookmark_revision(self) -> int:
        """A BOOKMARK resourceVersion, valid once every event returned so far
        has been sent: the cache's revision when caught up, else the last
        event's."""
        if isinstance(self._events, Subscriber):
            return self._events.bookmark_revision()
        return self._last

    async def aclose(self) -> None:
        self._closed = True
        if self._events is not None:
            await self._events.aclose()


class CachedStorage(Storage):
    """A Storage serving ``watch`` from per-resource WatchCaches (one per
    ``/registry/{resource}/``, started by ``warm`` or at the resource's first
    watch) and delegating everything else.

    ``watch`` returns an iterator that subscribes on its first ``__anext__``;
    ``subscribe`` does it at once and returns the Subscriber (with
    ``batch()`` and ``bookmark_revision()``) or an etcd watch for old revisions.
    """

    def __init__(self, storage: EtcdStorage, window: int = DEFAULT_WINDOW,
                 buffer: int = DEFAULT_BUFFER, progress_interval: float = DEFAULT_PROGRESS_INTERVAL):
        self.storage = storage
        self._progress_interval = progress_interval
        self._window = window
        self._buffer = buffer
        self._caches: dict[str, WatchCache] = {}
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> dict:
        return await self.storage.get(key)

    async def list(self, prefix: str, revision: int = 0, limit: int = 0,
                   continue_token: Optional[str] = None) -> ListResult:
        return await self.storage.list(prefix, revision, limit, continue_token)

    async def list_raw(self, prefix: str, revision: int = 0, limit: int = 0,
                       continue_token: Optional[str] = None) -> ListResult:
        """See EtcdStorage.list_raw (items are JSON bytes)."""
        return await self.storage.list_raw(prefix, revision, limit, continue_token)

    async def create(self, key: str, obj: dict) -> dict:
        return await self.storage.create(key, obj)

    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                preconditions: Optional[Preconditions] = None) -> dict:
        """See Storage.guaranteed_update; the watch cache's newest state of ``key``,
        when it has one, is tried first (one etcd round trip instead of two)."""
        return await self.storage.guaranteed_update(key, fn, preconditions, self._suggestion(key))

    async def delete(self, key: str, preconditions: Optional[Preconditions] = None) -> dict:
        """See Storage.delete; with preconditions, the watch cache's newest state of ``key``
        is tried first, as for ``guaranteed_update``."""
        return await self.storage.delete(key, preconditions, self._suggestion(key))

    def known(self, key: str) -> Optional[dict]:
        """See Storage.known: the newer of the watch cache's state of ``key`` and the one
        this apiserver last wrote."""
        return self.storage.known(key, self._suggestion(key))

    def _suggestion(self, key: str) -> Optional[tuple[bytes, int]]:
        cache = self._caches.get(resource_prefix(key) or "")
        return cache.suggestion(key) if cache is not None else None

    def watch(self, prefix: str, revision: int, buffer: Optional[int] = None) -> "Watch":
        """See Storage.watch; raises WatcherTooSlow when the consumer lags.

        The iterator subscribes on its first ``__anext__`` and also offers
        ``bookmark_revision()``."""
        return Watch(self, prefix, revision, buffer)

    async def subscribe(self, prefix: str, revision: int, buffer: Optional[int] = None):
        """Subscribe now; see WatchCache.watch. Close the result with aclose()."""
        cache = await self.cache_for(prefix)
        if cache is None:
            return self.storage.watch(prefix, revision)
        return cache.watch(prefix, revision, buffer or self._buffer)

    async def warm(self, prefixes: Iterable[str]) -> None:
        """Start the caches of ``prefixes`` now rather than at their first watch. A cache
        that cannot start (etcd unavailable) is logged and left to its first watch."""
        for prefix in prefixes:
            try:
                await self.cache_for(prefix)
            except StorageError as err:
                log.warning("watch cache of %s not started: %s", prefix, err)

    async def cache_for(self, prefix: str) -> Optional[WatchCache]:
        """The running cache for ``prefix``'s resource (made on first use,
        remade after a failure); None for keys outside ``/registry/{resource}/``."""
        resource = resource_prefix(prefix)
        if resource is None:
            return None
        async with self._lock:
            cache = self._caches.get(resource)
            if cache is None or cache.failed:
                if cache is not None:
                    await cache.close()
                cache = WatchCache(self.storage, resource, self._window, self._progress_interval)
                await cache.start()
                self._caches[resource] = cache
            return cache

    async def current_revision(self) -> int:
        return await self.storage.current_revision()

    async def compact(self, revision: int) -> None:
        await self.storage.compact(revision)

    async def close(self) -> None:
        """End every cache and subscriber, then the underlying store."""
        caches, self._caches = list(self._caches.values()), {}
        for cache in caches:
            await cache.close()
        await self.storage.close()
