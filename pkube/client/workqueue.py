"""A de-duplicating, delaying, rate-limited work queue (Kubernetes' workqueue).

Contract, as in client-go:
- A key waiting in the queue is there once, however often it is added (dirty set).
- A key being processed (between ``get`` and ``done``) is never handed out
  again; if it is added meanwhile it is queued again when ``done`` is called.
- ``add_after(key, delay)`` queues it once the injected clock reaches the time.
- ``add_rate_limited(key)`` delays it by the per-key exponential back-off
  (5 ms, 10 ms, ... up to 1000 s); ``forget(key)`` resets it after a success.
- After ``shutdown()``, ``get`` returns None once the queue is drained.

Single event loop: all methods are called from the loop's thread; ``get`` is
the only coroutine. ``get_nowait`` serves tests driven by a FakeClock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from typing import Hashable, Optional

from pkube.client.clock import Clock, wait_until_set
from pkube.client.metrics import NoQueueMetrics, QueueMetrics


class ExponentialBackoff:
    """Per-key delay: base * 2**failures, capped at ``max_delay``."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0):
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        """The delay for this failure of ``key``; counts it."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures > 60:
            return self.max_delay
        return min(self.base * (2 ** failures), self.max_delay)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    """See the module docstring."""

    def __init__(self, clock: Optional[Clock] = None, rate_limiter: Optional[ExponentialBackoff] = None,
                 metrics: Optional[QueueMetrics] = None):
        """``metrics`` (client.metrics.WorkqueueMetrics.for_queue(name)) counts adds, retries,
        depth and the time keys wait and are worked on; None: not measured."""
        self.clock = clock or Clock()
        self.metrics = metrics or NoQueueMetrics()
        self.metrics.measure_depth(self.__len__)
        self.rate_limiter = rate_limiter or ExponentialBackoff()
        self._queue: deque = deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._waiting: list = []          # heap of (ready_at, seq, key)
        self._waiting_at: dict = {}       # key -> earliest ready_at among its waits
        self._seq = itertools.count()
        self._shutting_down = False
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        """Queue ``key`` unless it is already waiting; no-op after shutdown."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self.metrics.added(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds of the clock (at once if <= 0)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self.clock.now() + delay
        if self._waiting_at.get(key, float("inf")) <= ready_at:
            return
        self._waiting_at[key] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), key))
        self._wakeup.set()

    def add_rate_limited(self, key: Hashable) -> None:
        """Queue ``key`` after its back-off; each call doubles it until ``forget``."""
        self.metrics.retried()
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        """Reset ``key``'s back-off (call after it was processed successfully)."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    def get_nowait(self) -> Optional[Hashable]:
        """The next ready key, now marked processing; None if none is ready."""
        self._release_due()
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        self.metrics.started(key)
        return key

    async def get(self) -> Optional[Hashable]:
        """Wait for the next key; None once shut down and drained."""
        while True:
            key = self.get_nowait()
            if key is not None:
                return key
            if self._shutting_down:
                return None
            self._wakeup.clear()
            await wait_until_set(self.clock, self._wakeup, self._next_delay())

    def done(self, key: Hashable) -> None:
        """``key`` is processed; if it was added meanwhile it is queued again."""
        self._processing.discard(key)
        self.metrics.finished(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()

    def shutdown(self) -> None:
        """Stop accepting keys; waiting ``get`` calls return None once drained."""
        self._shutting_down = True
        self._wakeup.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def _release_due(self) -> None:
        now = self.clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._waiting)
            if self._waiting_at.get(key) == ready_at:
                del self._waiting_at[key]
                self.add(key)

    def _next_delay(self) -> Optional[float]:
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - self.clock.now())
