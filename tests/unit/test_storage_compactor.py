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


def run_rounds(compactor_args: dict, revisions: dict, rounds: int, down=()) -> tuple[FakeStore, FakeClock]:
    """Run a Compactor on the fake store for ``rounds`` checks; before check n the store's
    revision becomes ``revisions[n]`` (when given) and etcd is down for n in ``down``."""
    store = FakeStore()

    def tick(n):
        store.down = n in down
        store.revision = revisions.get(n, store.revision)

    async def main():
        clock = FakeClock(tick)
        compactor = Compactor(store, sleep=clock.sleep, **compactor_args)
        compactor.start()
        while len(clock.slept) < rounds + 1:
            await asyncio.sleep(0)
        await compactor.stop()
        return clock

    return store, asyncio.run(main())


def test_compacts_to_current_minus_window_every_interval():
    store, clock = run_rounds({"interval": 60, "window": 100, "revisions": 0},
                              {6: 50, 12: 150, 18: 160, 24: 400}, rounds=30, down={30})
    assert store.compactions == [50, 60, 300]  # at 1 min: nothing beyond the window yet
    assert set(clock.slept) == {10}            # checks every 10 s


def test_a_failed_round_is_retried_at_the_next_check():
    store, _ = run_rounds({"interval": 60, "window": 100, "revisions": 0},
                          {6: 400}, rounds=7, down={6})
    assert store.compactions == [300]


def test_compacts_early_once_too_many_revisions_piled_up():
    """At 1,000 revisions per check, with 2,500 allowed beyond the window: the first
    compaction at the fourth check, then every third, long before the interval."""
    revisions = {n: 1_000 * n for n in range(1, 13)}
    store, _ = run_rounds({"interval": 300, "window": 500, "revisions": 2_500}, revisions, rounds=12)
    assert store.compactions == [3_500, 6_500, 9_500]


def test_a_short_interval_is_also_the_check_period():
    store, clock = run_rounds({"interval": 2, "window": 0}, {1: 5, 2: 9}, rounds=3)
    assert store.compactions == [5, 9]
    assert set(clock.slept) == {2}


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        Compactor(FakeStore(), interval=0)
    with pytest.raises(ValueError):
        Compactor(FakeStore(), window=-1)
    with pytest.raises(ValueError):
        Compactor(FakeStore(), revisions=-1)


def test_the_apiserver_flag_sets_the_revisions_and_refuses_a_negative(capsys):
    from pkube.apiserver.__main__ import parse_args

    assert parse_args([]).compaction_revisions == 20_000
    assert parse_args(["--compaction-revisions", "0"]).compaction_revisions == 0
    with pytest.raises(SystemExit):
        parse_args(["--compaction-revisions", "-1"])
    assert "--compaction-revisions must not be negative" in capsys.readouterr().err
