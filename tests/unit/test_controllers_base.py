"""Controller base: retry policy of reconcile errors, shared informers, expectations."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.fake import FakeApi
from pkube.client.resources import PODS, REPLICASETS
from pkube.controllers.base import (Controller, ControllerContext, Expectations, PermanentError,
                              TemporaryError, split_key)


class Recording(Controller):
    name = "recording"

    def __init__(self, ctx, outcomes):
        super().__init__(ctx)
        self.outcomes = outcomes
        self.seen = []

    async def reconcile(self, key):
        self.seen.append(key)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


def make(outcomes):
    clock = FakeClock()
    ctx = ControllerContext.create(FakeApi(), clock=clock)
    return clock, Recording(ctx, outcomes)


def test_success_is_not_retried():
    clock, c = make([])
    c.queue.add("ns/a")
    c.queue.add("ns/a")
    assert asyncio.run(c.process_ready()) == 1
    clock.advance(3600)
    assert asyncio.run(c.process_ready()) == 0


def test_failure_is_retried_with_backoff():
    clock, c = make([RuntimeError("boom"), RuntimeError("boom")])
    c.queue.add("ns/a")
    asyncio.run(c.process_ready())
    assert asyncio.run(c.process_ready()) == 0
    clock.advance(0.006)
    assert asyncio.run(c.process_ready()) == 1
    clock.advance(0.006)
    assert asyncio.run(c.process_ready()) == 0   # second failure waits twice as long
    clock.advance(0.006)
    assert asyncio.run(c.process_ready()) == 1
    assert c.seen == ["ns/a"] * 3


def test_permanent_error_is_dropped_and_temporary_error_waits_its_delay():
    clock, c = make([PermanentError("bad spec"), TemporaryError("later", delay=5)])
    c.queue.add("ns/p")
    asyncio.run(c.process_ready())
    clock.advance(3600)
    assert asyncio.run(c.process_ready()) == 0
    c.queue.add("ns/t")
    asyncio.run(c.process_ready())
    clock.advance(4.9)
    assert asyncio.run(c.process_ready()) == 0
    clock.advance(0.2)
    assert asyncio.run(c.process_ready()) == 1


def test_one_informer_per_resource_with_merged_indexers():
    ctx = ControllerContext.create(FakeApi(), clock=FakeClock())
    a = ctx.informers.informer(PODS, {"by_node": lambda o: [o["spec"].get("nodeName", "")]})
    b = ctx.informers.informer(PODS, {"by_ns": lambda o: [o["metadata"]["namespace"]]})
    assert a is b
    assert ctx.informers.informer(REPLICASETS) is not a
    a.store.put({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "x"}})
    assert [o["metadata"]["name"] for o in a.store.by_index("by_node", "x")] == ["p"]
    assert [o["metadata"]["name"] for o in a.store.by_index("by_ns", "n")] == ["p"]


def test_expectations_hold_until_observed_or_expired():
    clock = FakeClock()
    exp = Expectations(clock, timeout=60)
    assert exp.satisfied("k")
    exp.expect("k", adds=2)
    exp.observed_add("k")
    assert not exp.satisfied("k")
    exp.observed_add("k")
    assert exp.satisfied("k")
    exp.expect("k", deletes=["ns/p"])
    exp.observed_delete("k", "ns/other")
    assert not exp.satisfied("k")
    exp.observed_delete("k", "ns/p")
    exp.observed_delete("k", "ns/p")
    assert exp.satisfied("k")
    exp.expect("k", deletes=["ns/q", "ns/r"])
    exp.observed_delete("k", "ns/r")
    assert exp.pending_deletes("k") == {"ns/q"}
    clock.advance(61)
    assert exp.satisfied("k")
    assert exp.pending_deletes("k") == set()


@pytest.mark.parametrize("key,expected", [("ns/a", ("ns", "a")), ("node1", (None, "node1"))])
def test_split_key(key, expected):
    assert split_key(key) == expected
