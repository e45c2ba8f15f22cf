"""Helpers of the controller integration tests (no tests here): a fake kubelet, polling."""

import asyncio
import datetime as dt

from pkube.client.aio import AsyncApiClient
from pkube.client.errors import ApiError, NotFound
from pkube.client.informer import Informer
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import PODS
from pkube.client.timefmt import rfc3339
from pkube.controllers.manager import ControllerManager


class FakeKubelet:
    """Plays every kubelet: each new pod is reported Running and Ready; a pod being
    deleted gracefully is removed (grace 0), as a kubelet does once its containers stop.
    ``hold`` (a set of pod names) keeps pods from becoming ready. Subclasses change what
    becomes of a pod that is not being deleted by overriding ``report``."""

    def __init__(self, client, hold=None):
        self.client = client
        self.hold = hold if hold is not None else set()
        self.hold_all = False
        self.informer = Informer(client, PODS)
        self.pending: asyncio.Queue = asyncio.Queue()
        self.informer.add_handlers(self.pending.put_nowait, lambda old, new: self.pending.put_nowait(new))

    async def run(self):
        informer = asyncio.ensure_future(self.informer.run())
        try:
            while True:
                pod = await self.pending.get()
                try:
                    await self.handle(pod)
                except ApiError:
                    pass
        finally:
            informer.cancel()

    async def handle(self, pod):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0)
            return
        await self.report(pod)

    async def report(self, pod):
        """A pod not being deleted, on every change: make it Running and Ready unless held."""
        status = pod.get("status") or {}
        if status.get("phase") == "Running" or self.hold_all or pod["metadata"]["name"] in self.hold:
            return
        await self.mark_ready(pod)

    async def mark_ready(self, pod):
        meta = pod["metadata"]
        now = rfc3339(dt.datetime.now(dt.timezone.utc))
        status = {"phase": "Running", "podIP": "10.0.0.1",
                  "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                                 {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]}
        try:
            await self.client.patch(PODS, meta["name"], {"status": status}, meta["namespace"],
                                    subresource="status")
        except NotFound:
            pass


def with_controllers(apiserver, scenario, names=("replicaset",), kubelet=True, timeout=60, **options):
    """Run ``scenario(client)`` while a ControllerManager (and a FakeKubelet) run; the
    kubelet is reachable as ``scenario.kubelet`` when the scenario is a function."""
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            manager = ControllerManager(client, list(names), **options)
            tasks = [asyncio.ensure_future(manager.run())]
            if kubelet:
                fake = FakeKubelet(client)
                scenario.kubelet = fake
                tasks.append(asyncio.ensure_future(fake.run()))
            try:
                await asyncio.wait_for(scenario(client), timeout)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())
