"""The kubelet's StatusManager on a fake API whose writes land when the test lets them: one
pod's statuses are written one at a time, in the order they were set, so the newest is the
one the API keeps (issue 15: a Running that landed after the pod's Succeeded left a Job
waiting on a pod whose container had long exited)."""

from __future__ import annotations

import asyncio

from pkube.kubelet.statusmanager import StatusManager

POD = {"metadata": {"name": "five-0-x", "namespace": "default", "uid": "u1"}, "status": {"phase": "Pending"}}
RUNNING = {"phase": "Running"}
SUCCEEDED = {"phase": "Succeeded"}


class SlowFirstWriteApi:
    """pods/status patches, applied in the order they complete; the first one completes only
    once ``release`` is set (an apiserver that took longer over it)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.first_sent = asyncio.Event()
        self.succeeded_applied = asyncio.Event()
        self.sent: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.phase = "Pending"

    async def settled(self) -> None:
        """Until a Succeeded was applied and no write is on its way."""
        while not (self.succeeded_applied.is_set() and self.in_flight == 0):
            await asyncio.sleep(0.01)

    async def patch(self, resource, name, body, namespace=None, subresource=None):
        phase = body["status"]["phase"]
        self.sent.append(phase)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if len(self.sent) == 1:
            self.first_sent.set()
            await self.release.wait()
        self.in_flight -= 1
        self.phase = phase
        if phase == "Succeeded":
            self.succeeded_applied.set()
        return {}


def run_with_manager(steps) -> tuple[SlowFirstWriteApi, StatusManager]:
    """Run ``await steps(api, manager)`` with the manager's writers going, then wait until
    the API settled; returns both for the assertions."""
    async def scenario():
        api = SlowFirstWriteApi()
        manager = StatusManager(api)
        writers = asyncio.ensure_future(manager.run())
        try:
            await steps(api, manager)
            await asyncio.wait_for(api.settled(), 5)
        finally:
            writers.cancel()
        return api, manager
    return asyncio.run(scenario())


def test_a_status_set_while_the_previous_one_is_on_its_way_is_written_after_it():
    async def steps(api, manager):
        manager.set(POD, RUNNING)
        await asyncio.wait_for(api.first_sent.wait(), 5)
        manager.set(POD, SUCCEEDED)
        for _ in range(20):             # the idle writers' turn: none may take the pod now
            await asyncio.sleep(0)
        api.release.set()

    api, manager = run_with_manager(steps)
    assert api.phase == "Succeeded"
    assert api.sent == ["Running", "Succeeded"]
    assert api.most_in_flight == 1
    assert manager.written("u1") == SUCCEEDED


def test_a_status_equal_to_the_one_on_its_way_is_not_written_again():
    async def steps(api, manager):
        manager.set(POD, SUCCEEDED)
        await asyncio.wait_for(api.first_sent.wait(), 5)
        manager.set(POD, dict(SUCCEEDED))
        api.release.set()

    api, manager = run_with_manager(steps)
    assert api.sent == ["Succeeded"]
    assert manager.written("u1") == SUCCEEDED
