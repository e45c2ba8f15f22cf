"""The Event recorder creates core/v1 Events and aggregates repeats into a count."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.events import EventRecorder
from pkube.client.fake import FakeApi

POD = {"kind": "Pod", "apiVersion": "v1",
       "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"}}


def test_event_fields_and_aggregation():
    async def scenario():
        api, clock = FakeApi(), FakeClock()
        rec = EventRecorder(api, "default-scheduler", clock=clock)
        first = await rec.event(POD, "Warning", "FailedScheduling", "0/1 nodes are available")
        assert first["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "name": "web-1",
                                           "namespace": "shop", "uid": "u-1", "resourceVersion": "7"}
        assert (first["type"], first["reason"], first["count"]) == ("Warning", "FailedScheduling", 1)
        assert first["source"] == {"component": "default-scheduler"}
        assert first["metadata"]["namespace"] == "shop"
        clock.advance(60)
        second = await rec.event(POD, "Warning", "FailedScheduling", "0/1 nodes are available")
        assert second["metadata"]["name"] == first["metadata"]["name"] and second["count"] == 2
        assert second["lastTimestamp"] == "2026-01-01T00:01:00Z"
        assert second["firstTimestamp"] == "2026-01-01T00:00:00Z"
        other = await rec.event(POD, "Normal", "Scheduled", "assigned")
        assert other["metadata"]["name"] != first["metadata"]["name"]
        assert len([o for k, o in api.objects.items() if k[0] == "events"]) == 2
    asyncio.run(scenario())


def test_a_deleted_aggregate_is_created_again():
    async def scenario():
        api = FakeApi()
        rec = EventRecorder(api, "c", clock=FakeClock())
        first = await rec.event(POD, "Normal", "R", "m")
        del api.objects[("events", "shop", first["metadata"]["name"])]
        again = await rec.event(POD, "Normal", "R", "m")
        assert again["count"] == 1
    asyncio.run(scenario())


def test_bad_type_is_refused():
    with pytest.raises(ValueError, match="event type"):
        asyncio.run(EventRecorder(FakeApi(), "c").event(POD, "Error", "R", "m"))


def test_emit_buffers_writes_for_run_and_drops_when_full():
    async def scenario():
        api = FakeApi()
        rec = EventRecorder(api, "c", clock=FakeClock(), buffer=2)
        for reason in ("A", "B", "C"):
            rec.emit(POD, "Normal", reason, "m")
        assert rec.dropped == 1 and rec.pending() == 2 and not api.writes
        worker = asyncio.ensure_future(rec.run())
        for _ in range(20):
            await asyncio.sleep(0)
        worker.cancel()
        assert sorted(w[3]["reason"] for w in api.writes) == ["A", "B"]
    asyncio.run(scenario())
