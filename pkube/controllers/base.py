"""The shape every controller shares (STYLE.md 5), and what they share in one process.

Contract for a controller module ``controllers/<name>.py``:

- it exposes ``new_controller(ctx: ControllerContext) -> Controller``, called
  once per process before anything runs; there it takes the shared informers
  it needs (``ctx.informers.informer(RESOURCE)``) and registers handlers;
- informer handlers only enqueue keys (``self.enqueue(obj)``, or a key
  computed from the object, e.g. its owner's), never await or call the API;
- ``run()`` waits for the informers to sync, then ``workers`` tasks take keys
  from the de-duplicating, rate-limited ``WorkQueue`` (one key is never
  reconciled twice at once; a burst of adds collapses into one reconcile);
- ``reconcile(key)`` reads the informer caches, deep-copies before changing
  anything, acts through ``ctx.client``, writes status, and returns. Raising
  retries the key with per-key exponential back-off, except:
  ``PermanentError`` (logged, not retried until the key is added again) and
  ``TemporaryError(delay)`` (retried after exactly ``delay`` seconds). A
  normal return forgets the key's back-off. ``self.queue.add_after(key, s)``
  schedules a later visit (e.g. minReadySeconds, progress deadlines).

``ControllerContext`` is what one controller-manager process shares: the API
client, one ``InformerFactory`` (one informer per resource per process), one
Event recorder, and the clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Optional

from pkube.client.clock import Clock
from pkube.client.errors import ApiError
from pkube.client.events import EventRecorder
from pkube.client.informer import Informer
from pkube.client.metrics import QueueMetrics, WorkqueueMetrics
from pkube.client.store import IndexFunc, Store, object_key
from pkube.client.workqueue import WorkQueue

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """Retrying cannot help (bad spec, refused by validation): log, do not requeue."""


class TemporaryError(Exception):
    """Retry after ``delay`` seconds (instead of the back-off)."""

    def __init__(self, message: str, delay: float = 1.0):
        super().__init__(message)
        self.delay = delay


class InformerFactory:
    """One shared informer per resource for a process; created lazily, started together.

    ``informer()`` may be called (by every controller's ``new_controller``)
    until ``start()``; indexers asked for by several callers are merged.
    """

    def __init__(self, client, clock: Optional[Clock] = None, resync_period: float = 0.0):
        self.client = client
        self.clock = clock or Clock()
        self.resync_period = resync_period
        self._informers: dict = {}
        self._indexers: dict = {}        # resource -> every indexer asked for
        self._tasks: list[asyncio.Task] = []

    def informer(self, resource, indexers: Optional[dict[str, IndexFunc]] = None) -> Informer:
        """The process-wide informer of ``resource`` (all namespaces)."""
        informer = self._informers.get(resource)
        if informer is None:
            informer = Informer(self.client, resource, resync_period=self.resync_period,
                                clock=self.clock, indexers=indexers)
            self._informers[resource] = informer
            self._indexers[resource] = dict(indexers or {})
        elif indexers:
            self._add_indexers(resource, informer, indexers)
        return informer

    def _add_indexers(self, resource, informer: Informer, indexers: dict[str, IndexFunc]) -> None:
        """The store is still empty before start: replace it by one with every index."""
        if self._tasks:
            raise RuntimeError("indexers must be added before the informers start")
        self._indexers[resource].update(indexers)
        informer.store = Store(self._indexers[resource])

    def start(self) -> None:
        """Start every informer as a task on the running loop (idempotent)."""
        if self._tasks:
            return
        self._tasks = [asyncio.ensure_future(inf.run()) for inf in self._informers.values()]

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


@dataclass
class ControllerContext:
    """What the controllers of one process share. ``options`` carries per-controller
    settings from the command line (e.g. ``{"replicaset_burst": 500}``)."""

    client: object
    informers: InformerFactory
    recorder: EventRecorder
    clock: Clock = field(default_factory=Clock)
    options: dict = field(default_factory=dict)
    workqueue_metrics: Optional[WorkqueueMetrics] = None

    @classmethod
    def create(cls, client, clock: Optional[Clock] = None, resync_period: float = 0.0,
               workqueue_metrics: Optional[WorkqueueMetrics] = None, **options) -> "ControllerContext":
        clock = clock or Clock()
        informers = InformerFactory(client, clock, resync_period)
        recorder = EventRecorder(client, "controller-manager", clock=clock)
        return cls(client, informers, recorder, clock, options, workqueue_metrics)

    def queue_metrics(self, name: str) -> Optional[QueueMetrics]:
        """The metrics of the workqueue named ``name`` (None when the process has none)."""
        return self.workqueue_metrics.for_queue(name) if self.workqueue_metrics is not None else None


class Controller:
    """Base of every controller: a queue of keys, workers, and ``reconcile``.

    Subclasses set ``name`` and implement ``reconcile(key)``; handlers call
    ``enqueue(obj)`` or ``queue.add(key)``.
    """

    name = "controller"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        self.ctx = ctx
        self.client = ctx.client
        self.clock = ctx.clock
        self.workers = workers
        self.queue = WorkQueue(ctx.clock, metrics=ctx.queue_metrics(self.name))

    def enqueue(self, obj: dict) -> None:
        """Queue ``obj``'s key (``namespace/name`` or ``name``)."""
        self.queue.add(object_key(obj))

    async def reconcile(self, key: str) -> None:
        """Make the world match the desired state for ``key``; raise to retry."""
        raise NotImplementedError

    async def run(self) -> None:
        """Wait for the caches, then work until cancelled (the queue is shut down then)."""
        await self.ctx.informers.wait_synced()
        log.info("%s controller: caches synced, %d workers", self.name, self.workers)
        workers = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            await self.process(key)

    async def process(self, key: str) -> None:
        """Reconcile one key taken from the queue and apply its retry policy; never raises."""
        try:
            await self.reconcile(key)
            self.queue.forget(key)
        except asyncio.CancelledError:
            raise
        except PermanentError as err:
            log.error("%s %s: %s (not retried)", self.name, key, err)
            self.queue.forget(key)
        except TemporaryError as err:
            log.info("%s %s: %s; retry in %ss", self.name, key, err, err.delay)
            self.queue.add_after(key, err.delay)
        except Exception as err:  # noqa: BLE001 - any failure: back off and retry
            log.warning("%s %s: %s; retrying", self.name, key, err, exc_info=not _expected(err))
            self.queue.add_rate_limited(key)
        finally:
            self.queue.done(key)

    async def process_ready(self) -> int:
        """Reconcile every key ready now, one at a time; how many (tests drive this)."""
        count = 0
        while (key := self.queue.get_nowait()) is not None:
            await self.process(key)
            count += 1
        return count


def _expected(err: Exception) -> bool:
    """API errors are routine (conflicts, races); anything else gets a traceback."""
    return isinstance(err, ApiError)


def split_key(key: str) -> tuple[Optional[str], str]:
    """``namespace/name`` → (namespace, name); ``name`` → (None, name)."""
    namespace, _, name = key.rpartition("/")
    return (namespace or None), name


class Expectations:
    """Creates and deletes a controller has issued for a key but not yet seen.

    Kubernetes' (UID-tracking) ControllerExpectations: after a burst of
    creates the informer lags behind; until it has seen them (or ``timeout``
    seconds pass) the controller must not act on the stale count again.
    Creates are counted; deletes are tracked by the deleted object's key, so
    a pod seen first as terminating and then as gone counts once.
    ``satisfied(key)`` is True when nothing is pending or the record expired.
    """

    def __init__(self, clock: Clock, timeout: float = 300.0):
        self.clock = clock
        self.timeout = timeout
        self._adds: dict[str, int] = {}
        self._deletes: dict[str, set] = {}
        self._set_at: dict[str, float] = {}

    def expect(self, key: str, adds: int = 0, deletes=()) -> None:
        """Record that ``adds`` creates and deletes of the object keys ``deletes`` are on their way."""
        self._adds[key] = adds
        self._deletes[key] = set(deletes)
        self._set_at[key] = self.clock.now()

    def observed_add(self, key: str) -> None:
        if self._adds.get(key, 0) > 0:
            self._adds[key] -= 1

    def observed_delete(self, key: str, obj_key: str) -> None:
        self._deletes.get(key, set()).discard(obj_key)

    def satisfied(self, key: str) -> bool:
        if key not in self._set_at:
            return True
        done = self._adds.get(key, 0) <= 0 and not self._deletes.get(key)
        return done or self.clock.now() - self._set_at[key] > self.timeout

    def pending_deletes(self, key: str) -> set:
        """Keys of the objects whose deletion for ``key`` has been issued but not yet seen
        (empty once the record expired)."""
        if key not in self._set_at or self.clock.now() - self._set_at[key] > self.timeout:
            return set()
        return set(self._deletes.get(key, ()))

    def forget(self, key: str) -> None:
        for table in (self._adds, self._deletes, self._set_at):
            table.pop(key, None)
