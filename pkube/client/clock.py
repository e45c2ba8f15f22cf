"""Injected time: every loop with a period, a deadline or a back-off takes a Clock.

``Clock`` is the real one (monotonic seconds, ``asyncio.sleep``; ``wall()``
for timestamps written into objects). ``FakeClock`` moves only when told:
``advance(s)`` wakes the sleepers whose deadline has come, so tests never
sleep for real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time


class Clock:
    """Real time."""

    def now(self) -> float:
        """Monotonic seconds, for deadlines and periods."""
        return time.monotonic()

    def wall(self) -> dt.datetime:
        """UTC wall time, for timestamps written into API objects."""
        return dt.datetime.now(dt.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock(Clock):
    """Time that moves only on ``advance``; ``sleep`` waits for it."""

    def __init__(self, start: float = 1000.0, wall_start: dt.datetime | None = None):
        self._now = start
        self._wall0 = wall_start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self._start = start
        self._sleepers: list = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> dt.datetime:
        return self._wall0 + dt.timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper now due (they run at the next await)."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (tests use it to know a loop is parked)."""
        return sum(1 for *_, f in self._sleepers if not f.done())


async def wait_until_set(clock: Clock, event: asyncio.Event, timeout: float | None) -> None:
    """Return once ``event`` is set or ``timeout`` seconds of ``clock`` have passed, whichever
    comes first (``timeout`` None: only the event). The event is left as it is."""
    if timeout is None:
        await event.wait()
        return
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    waker = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waker.cancel()
