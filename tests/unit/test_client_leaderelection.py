"""Leader election over an in-memory Lease API and a fake clock."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.errors import Conflict
from pkube.client.fake import FakeApi
from pkube.client.leaderelection import LeaderElectionConfig, LeaderElector
from pkube.client.resources import LEASES


def elector(api, clock, identity, log):
    async def lead():
        log.append(("started", identity))
        await asyncio.Event().wait()
    cfg = LeaderElectionConfig("kube-system", "sched", identity)
    return LeaderElector(api, cfg, lead, lambda: log.append(("stopped", identity)), clock)


def lease(api):
    return api.objects[("leases", "kube-system", "sched")]["spec"]


async def settle():
    for _ in range(30):
        await asyncio.sleep(0)


def test_timings_must_be_ordered():
    with pytest.raises(ValueError):
        LeaderElectionConfig("ns", "l", "me", lease_duration=5, renew_deadline=10)


def test_first_candidate_creates_the_lease_and_leads():
    async def scenario():
        api, clock, log = FakeApi(), FakeClock(), []
        a = elector(api, clock, "a", log)
        assert await a.try_acquire_or_renew()
        spec = lease(api)
        assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == ("a", 15, 0)
        assert spec["acquireTime"] == spec["renewTime"] == "2026-01-01T00:00:00.000000Z"
    asyncio.run(scenario())


def test_standby_acquires_only_after_the_lease_expires():
    async def scenario():
        api, clock, log = FakeApi(), FakeClock(), []
        a, b = elector(api, clock, "a", log), elector(api, clock, "b", log)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        clock.advance(14)
        assert not await b.try_acquire_or_renew()
        clock.advance(1)
        assert await b.try_acquire_or_renew()
        assert (lease(api)["holderIdentity"], lease(api)["leaseTransitions"]) == ("b", 1)
    asyncio.run(scenario())


def test_renewal_keeps_the_standby_out():
    async def scenario():
        api, clock, log = FakeApi(), FakeClock(), []
        a, b = elector(api, clock, "a", log), elector(api, clock, "b", log)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        for _ in range(10):
            clock.advance(2)
            assert await a.try_acquire_or_renew()
            assert not await b.try_acquire_or_renew()
    asyncio.run(scenario())


def test_a_lost_race_is_a_conflict_not_a_double_leader():
    async def scenario():
        api, clock, log = FakeApi(), FakeClock(), []
        a, b, c = (elector(api, clock, name, log) for name in "abc")
        await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew() and not await c.try_acquire_or_renew()
        clock.advance(15)                       # a stopped renewing; b and c race
        read_by_c = await api.get(LEASES, "sched", "kube-system")
        assert await b.try_acquire_or_renew()
        read_by_c["spec"]["holderIdentity"] = "c"
        with pytest.raises(Conflict):
            await api.replace(LEASES, read_by_c, "kube-system")
        assert not await c.try_acquire_or_renew()
        assert lease(api)["holderIdentity"] == "b"
    asyncio.run(scenario())


def test_run_leads_then_stops_when_renewals_fail_past_the_deadline():
    async def scenario():
        api, clock, log = FakeApi(), FakeClock(), []
        a = elector(api, clock, "a", log)
        task = asyncio.ensure_future(a.run())
        await settle()
        assert a.is_leader() and log == [("started", "a")]
        api.objects[("leases", "kube-system", "sched")]["spec"]["holderIdentity"] = "intruder"
        for _ in range(8):
            clock.advance(2)
            await settle()
        assert task.done() and not a.is_leader()
        assert log == [("started", "a"), ("stopped", "a")]
    asyncio.run(scenario())
