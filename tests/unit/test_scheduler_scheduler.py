"""The Scheduler's routing of informer events and one scheduling attempt, over the in-memory FakeApi."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.errors import error_for_status, status_for
from pkube.client.fake import FakeApi
from pkube.client.resources import PODS
from pkube.scheduler.ratelimit import Pacer
from pkube.scheduler.scheduler import Scheduler, unschedulable_conditions
from tests.unit.test_scheduler_plugins import make_node, make_pod


def pending(name, **kw):
    pod = make_pod(name, **kw)
    pod["kind"] = "Pod"
    return pod


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


def scenario(test):
    async def main():
        api = FakeApi()
        sched = Scheduler(api, clock=FakeClock())
        events = asyncio.ensure_future(sched.recorder.run())
        try:
            await test(api, sched)
        finally:
            events.cancel()
    asyncio.run(main())


def test_only_pending_pods_of_this_scheduler_are_queued():
    async def test(api, sched):
        other = pending("other")
        other["spec"]["schedulerName"] = "someone-else"
        deleting = pending("deleting")
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        for pod in (pending("mine"), other, deleting, make_pod("bound", node_name="n1")):
            sched.on_pod_add(pod)
        assert len(sched.queue) == 1 and sched.queue.where("default/mine") == "active"
    scenario(test)


def test_bound_pods_count_on_their_node_and_deletion_frees_them():
    async def test(api, sched):
        sched.on_node_add(make_node("n1", cpu="2"))
        sched.on_pod_add(make_pod("running", cpu="2", node_name="n1"))
        sched.on_pod_add(pending("waiting", cpu="1"))
        queued = sched.queue.pop_nowait()
        assert sched.schedule_one(queued) is None
        assert sched.queue.where("default/waiting") == "unschedulable"
        sched.on_pod_delete(make_pod("running", cpu="2", node_name="n1"))
        assert sched.queue.where("default/waiting") in ("active", "backoff")
    scenario(test)


def test_a_decision_assumes_the_pod_and_binds_it():
    async def test(api, sched):
        sched.on_node_add(make_node("n1"))
        pod = await api.create(PODS, pending("web", cpu="1"))
        sched.on_pod_add(pod)
        assert sched.schedule_one(sched.queue.pop_nowait()) == "n1"
        assert sched.cache.is_assumed("default/web") and sched.cache.node("n1").cpu == 1000
        await settle()
        assert (await api.get(PODS, "web", "default"))["spec"]["nodeName"] == "n1"
        assert sched.bound == 1 and sched.queue.where("default/web") is None
        await settle()
        assert any(w[0] == "create" and w[1] == "events" and w[3]["reason"] == "Scheduled" for w in api.writes)
    scenario(test)


def test_a_failed_binding_is_forgotten_and_retried_after_backoff():
    async def test(api, sched):
        sched.on_node_add(make_node("n1"))
        pod = await api.create(PODS, pending("web", cpu="1"))
        sched.on_pod_add(pod)
        api.fail_next["bind"] = error_for_status(status_for(500, "InternalError", "etcd hiccup"))
        sched.schedule_one(sched.queue.pop_nowait())
        await settle()
        assert not sched.cache.is_assumed("default/web") and sched.cache.node("n1").cpu == 0
        assert sched.queue.where("default/web") == "backoff"
        sched.clock.advance(1)
        assert sched.schedule_one(sched.queue.pop_nowait()) == "n1"
    scenario(test)


def test_unschedulable_pod_gets_condition_and_event():
    async def test(api, sched):
        sched.on_node_add(make_node("n1", cpu="1"))
        pod = await api.create(PODS, pending("big", cpu="4"))
        sched.on_pod_add(pod)
        sched.schedule_one(sched.queue.pop_nowait())
        await settle()
        stored = await api.get(PODS, "big", "default")
        condition = stored["status"]["conditions"][0]
        assert (condition["type"], condition["status"], condition["reason"], condition["message"]) == \
            ("PodScheduled", "False", "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
        assert any(w[1] == "events" and w[3]["reason"] == "FailedScheduling" for w in api.writes)
    scenario(test)


def test_condition_is_not_rewritten_when_unchanged():
    pod = make_pod("p")
    conditions = unschedulable_conditions(pod, "msg", "2026-01-01T00:00:00Z")
    pod["status"] = {"conditions": conditions}
    assert unschedulable_conditions(pod, "msg", "2026-01-01T00:05:00Z") is None
    changed = unschedulable_conditions(pod, "other", "2026-01-01T00:05:00Z")
    assert changed[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z" and changed[0]["message"] == "other"


def test_a_burst_of_bindings_has_its_events_written_at_the_event_rate():
    async def main():
        api, clock = FakeApi(), FakeClock()
        sched = Scheduler(api, clock=clock, event_qps=2, event_burst=3)
        loops = [asyncio.ensure_future(sched.recorder.run()), asyncio.ensure_future(sched.event_pacer.run())]

        def scheduled_events():
            return sum(1 for w in api.writes if w[1] == "events" and w[3]["reason"] == "Scheduled")
        try:
            sched.on_node_add(make_node("n1", cpu="64", pods="110"))
            for i in range(7):
                sched.on_pod_add(await api.create(PODS, pending(f"web{i}", cpu="1")))
                sched.schedule_one(sched.queue.pop_nowait())
            await settle()
            assert sched.bound == 7 and scheduled_events() == 3        # the burst; four wait
            for expected in (5, 7):
                clock.advance(1)                                        # two more a second
                await settle()
                assert scheduled_events() == expected
            assert sched.events_dropped == 0
        finally:
            for loop in loops:
                loop.cancel()
    asyncio.run(main())


def test_the_pacer_drops_what_does_not_fit_its_queue():
    async def main():
        clock, passed = FakeClock(), []
        pacer = Pacer(passed.append, rate=1, burst=1, capacity=2, clock=clock)
        runner = asyncio.ensure_future(pacer.run())
        for i in range(5):
            pacer.put(i)
        await settle()
        assert passed == [0] and pacer.pending() == 2 and pacer.dropped == 2
        clock.advance(1)
        await settle()
        clock.advance(1)
        await settle()
        assert passed == [0, 1, 2] and pacer.pending() == 0
        runner.cancel()
    asyncio.run(main())


def test_the_event_rate_must_make_sense():
    with pytest.raises(ValueError):
        Scheduler(FakeApi(), clock=FakeClock(), event_qps=5, event_burst=0)
