"""The kubelet's side of its Node: register it, renew its Lease, report its status.

Registration retries until the apiserver answers (the node's pods keep running meanwhile).
The Lease in kube-node-lease is renewed every `lease_renew_seconds`; the status is written
when something significant changed (a condition, an address) and at least every
`report_seconds` otherwise, as the node lifecycle controller expects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Callable, Optional

from pkube.client.errors import AlreadyExists, ApiError, NotFound
from pkube.client.resources import LEASES, NODES
from pkube.client.timefmt import micro_time
from pkube.kubelet import node as nodes

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
RETRY_SECONDS = 2.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def lease_object(name: str, node_uid: Optional[str], now) -> dict:
    meta = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": micro_time(now)}}


class NodeAgent:
    """Keeps this kubelet's Node and Lease current. `ready()` says whether the node can run
    pods (the pod network is set up); `facts()` reads the host."""

    def __init__(self, client, config: nodes.NodeConfig, facts: Callable[[], nodes.HostFacts],
                 ready: Callable[[], bool], lease_renew_seconds: float = 10.0, report_seconds: float = 60.0):
        self.client = client
        self.config = config
        self.facts = facts
        self.ready = ready
        self.lease_renew_seconds = lease_renew_seconds
        self.report_seconds = report_seconds
        self.node: Optional[dict] = None
        self.registered = asyncio.Event()
        self._last_report = 0.0
        self._poke = asyncio.Event()

    def poke(self) -> None:
        """Something changed (network ready): report now."""
        self._poke.set()

    async def run(self) -> None:
        await self._register()
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._renew_lease()
                await self._report(loop.time())
            except ApiError as err:
                log.info("node %s: %s; retrying", self.config.name, err)
            try:
                await asyncio.wait_for(self._poke.wait(), self.lease_renew_seconds)
            except TimeoutError:
                pass
            self._poke.clear()

    async def _register(self) -> None:
        while True:
            try:
                self.node = await self._create_or_adopt()
                self.registered.set()
                log.info("node %s registered", self.config.name)
                return
            except ApiError as err:
                log.info("node %s: registration failed (%s); retrying", self.config.name, err)
                await asyncio.sleep(RETRY_SECONDS)

    async def _create_or_adopt(self) -> dict:
        obj = nodes.node_object(self.facts(), self.config, self.ready(), utcnow())
        try:
            return await self.client.create(NODES, obj)
        except AlreadyExists:
            existing = await self.client.get(NODES, self.config.name)
            labels = {**existing["metadata"].get("labels", {}), **obj["metadata"]["labels"]}
            await self.client.patch(NODES, self.config.name, {"metadata": {"labels": labels}})
            return await self.client.patch(NODES, self.config.name, {"status": obj["status"]}, subresource="status")

    async def _renew_lease(self) -> None:
        name, now = self.config.name, utcnow()
        try:
            await self.client.patch(LEASES, name, {"spec": {"holderIdentity": name, "renewTime": micro_time(now),
                                                            "leaseDurationSeconds": LEASE_DURATION_SECONDS}},
                                    LEASE_NAMESPACE)
        except NotFound:
            uid = (self.node or {}).get("metadata", {}).get("uid")
            try:
                await self.client.create(LEASES, lease_object(name, uid, now), LEASE_NAMESPACE)
            except AlreadyExists:
                pass

    async def _report(self, now: float) -> None:
        old = (self.node or {}).get("status") or {}
        new = nodes.node_status(self.facts(), self.config, self.ready(), utcnow(), old)
        due = now - self._last_report >= self.report_seconds
        if not due and not nodes.significant_change(old, new):
            return
        try:
            self.node = await self.client.patch(NODES, self.config.name, {"status": new}, subresource="status")
        except NotFound:      # deleted from the API: register again
            self.registered.clear()
            await self._register()
            return
        self._last_report = now
