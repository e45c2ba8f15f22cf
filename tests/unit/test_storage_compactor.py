"""The compactor's schedule and window, with a fake clock and a fake store."""

from __future__ import annotations

import asyncio

import pytest

from pkube.apiserver.storage.compactor import Compactor
from pkube.apiserver.storage.interface import StorageUnavailable


class FakeStore:
    """Only what the compactor uses: a revision that moves, and compact()."""

    def __init__(self):
        self.revision = 0
        self.compactions: list[int] = []
        self.down = False

    async def current_revision(self) -> int:
        if self.down:
            raise StorageUnavailable("", "etcd down")
        return self.revision

    async def compact(self, revision: int) -> None:
        self.compactions.append(revision)


class FakeClock:
    """sleep() that returns at once, letting the test advance the world between rounds."""

    def __init__(self, on_tick):
        self.slept: list[float] = []
        self._on_tick = on_tick

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._on_tick(len(self.slept))
        await asyncio.sleep(0)


def test_compacts_to_current_minus_window_every_interval():
    store = FakeStore()
    revisions = {1: 50, 2: 150, 3: 160, 4: 400, 5: 400}

    def tick(n):
        store.down = n == 5
        store.revision = revisions.get(n, store.revision)

    async def main():
        clock = FakeClock(tick)
        compactor = Compactor(store, interval=60, window=100, sleep=clock.sleep)
        compactor.start()
        while len(clock.slept) < 6:
            await asyncio.sleep(0)
        await compactor.stop()
        return clock

    clock = asyncio.run(main())
    assert store.compactions == [50, 60, 300]  # round 1: nothing beyond the window yet
    assert set(clock.slept) == {60}


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        Compactor(FakeStore(), interval=0)
    with pytest.raises(ValueError):
        Compactor(FakeStore(), window=-1)
