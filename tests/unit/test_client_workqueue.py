"""Work queue contract: de-duplication, processing exclusivity, delays, back-off, shutdown."""

import asyncio

from pkube.client.clock import FakeClock
from pkube.client.workqueue import ExponentialBackoff, WorkQueue


def drain(q):
    keys = []
    while (key := q.get_nowait()) is not None:
        keys.append(key)
    return keys


def test_repeated_adds_collapse_into_one():
    q = WorkQueue(FakeClock())
    for key in ["a", "b", "a", "a", "b"]:
        q.add(key)
    assert drain(q) == ["a", "b"]


def test_key_in_processing_is_not_handed_out_twice_but_reprocessed_after_done():
    q = WorkQueue(FakeClock())
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    assert q.get_nowait() is None
    q.done("a")
    assert q.get_nowait() == "a"
    q.done("a")
    assert q.get_nowait() is None


def test_add_after_waits_for_the_clock():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_after("late", 10)
    q.add_after("early", 2)
    assert q.get_nowait() is None
    clock.advance(2)
    assert drain(q) == ["early"]
    clock.advance(8)
    assert drain(q) == ["late"]


def test_add_after_keeps_the_earliest_deadline():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_after("a", 10)
    q.add_after("a", 1)
    clock.advance(1)
    assert drain(q) == ["a"]
    clock.advance(20)
    assert drain(q) == []


def test_exponential_backoff_per_key_and_forget():
    limiter = ExponentialBackoff()
    delays = [limiter.when("a") for _ in range(4)]
    assert delays == [0.005, 0.01, 0.02, 0.04]
    assert limiter.when("b") == 0.005
    limiter.forget("a")
    assert limiter.when("a") == 0.005
    assert max(limiter.when("c") for _ in range(100)) == 1000.0


def test_rate_limited_add_uses_the_backoff():
    clock = FakeClock()
    q = WorkQueue(clock)
    q.add_rate_limited("a")
    q.add_rate_limited("a")     # second failure: a later deadline, the earlier one stays
    assert q.num_requeues("a") == 2
    clock.advance(0.005)
    assert drain(q) == ["a"]


def test_async_get_wakes_on_add_and_returns_none_after_shutdown():
    async def scenario():
        q = WorkQueue()
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        q.add("x")
        assert await getter == "x"
        q.done("x")
        q.add("y")
        q.shutdown()
        q.add("z")                      # refused after shutdown
        assert await q.get() == "y"
        assert await q.get() is None
    asyncio.run(scenario())


def test_async_get_wakes_when_a_delayed_key_is_due():
    async def scenario():
        clock = FakeClock()
        q = WorkQueue(clock)
        q.add_after("k", 5)
        getter = asyncio.ensure_future(q.get())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not getter.done()
        clock.advance(5)
        assert await asyncio.wait_for(getter, 5) == "k"
    asyncio.run(scenario())
