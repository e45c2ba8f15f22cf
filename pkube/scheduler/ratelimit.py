"""Pacing the Events the scheduler writes, as kube-scheduler's client does.

kube-scheduler writes Events through a client limited to ``qps``/``burst``
(50/100 by default) behind a queue of 1,000 that drops what does not fit: a
burst of thousands of bindings gets its "Scheduled" Events written over the
following seconds at that rate, and the apiserver keeps its CPU for the
bindings. ``Pacer`` does the same for any item: ``put`` never waits, ``run``
hands items to a sink as a token bucket allows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from pkube.client.clock import Clock


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved (full at start); time from ``clock``."""

    def __init__(self, rate: float, burst: int, clock: Clock):
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, not {rate} and {burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock.now()

    def take(self) -> bool:
        """Spend one token if there is one; False if the bucket is empty."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def wait_time(self) -> float:
        """Seconds until a token is there (0 if one is)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def _refill(self) -> None:
        now = self.clock.now()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now


class Pacer:
    """Hands items to ``sink`` at most ``rate`` a second (``burst`` at once), keeping up to
    ``capacity`` waiting; beyond that items are dropped and counted in ``dropped``.

    ``sink`` is a plain function (it must not block). ``run()`` is one task, until cancelled.
    """

    def __init__(self, sink: Callable, rate: float, burst: int, capacity: int, clock: Clock):
        self.sink = sink
        self.clock = clock
        self.bucket = TokenBucket(rate, burst, clock)
        self.capacity = capacity
        self.dropped = 0
        self._waiting: deque = deque()
        self._wakeup = asyncio.Event()

    def put(self, item) -> None:
        """Pass ``item`` on now if a token is free and none wait, else queue it (or drop it)."""
        if not self._waiting and self.bucket.take():
            self.sink(item)
        elif len(self._waiting) < self.capacity:
            self._waiting.append(item)
            self._wakeup.set()
        else:
            self.dropped += 1

    def pending(self) -> int:
        return len(self._waiting)

    async def run(self) -> None:
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.clock.sleep(self.bucket.wait_time())
            if self.bucket.take():
                self.sink(self._waiting.popleft())
