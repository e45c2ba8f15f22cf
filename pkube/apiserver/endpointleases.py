"""Every live apiserver in the ``kubernetes`` Service's endpoints.

Kubernetes' lease endpoint reconciler, with Lease objects instead of raw etcd
keys: each apiserver keeps a Lease ``kube-system/apiserver-endpoint-<ip>``
(label ``apiserver.pkube.io/endpoint``, holder ``<ip>:<port>``) renewed every
third of its duration, and after each renewal publishes the addresses of every
Lease still within its duration. An apiserver that stops cleanly deletes its
Lease and publishes the rest at once; one that dies drops out when its Lease
expires (15 s by default), removed by whichever apiserver notices first.
Clients with one server URL then fail over through the Service, or through a
node's local load balancer fed from the same endpoints (pkube/cluster/loadbalancer.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Callable, Optional

from pkube.api.kinds import Registry
from pkube.apiserver import errors
from pkube.apiserver.bootstrap import KubernetesService
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, WriteOptions
from pkube.apiserver.storage.interface import Preconditions
from pkube.client.timefmt import micro_time

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
LABEL = "apiserver.pkube.io/endpoint"
DEFAULT_DURATION = 15.0


def lease_name(address: str) -> str:
    """The Lease of the apiserver advertising ``address`` (IPv6 colons made dashes)."""
    return "apiserver-endpoint-" + address.replace(":", "-").replace(".", "-")


def live_addresses(leases: list[dict], now: float) -> list[str]:
    """The addresses of the Leases renewed within their duration at ``now`` (epoch s)."""
    return [lease["spec"]["holderIdentity"].rsplit(":", 1)[0] for lease in leases if not expired(lease, now)]


def expired(lease: dict, now: float) -> bool:
    """True when ``lease`` was not renewed within its duration (or is malformed)."""
    spec = lease.get("spec") or {}
    try:
        renewed = dt.datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        return renewed.timestamp() + float(spec["leaseDurationSeconds"]) < now or ":" not in spec["holderIdentity"]
    except (KeyError, TypeError, ValueError):
        return True


class EndpointLeases:
    """Renews this apiserver's endpoint Lease and publishes the live ones through
    ``service.publish``; ``start`` runs it in the background, ``stop`` withdraws."""

    def __init__(self, store: ResourceStore, registry: Registry, service: KubernetesService,
                 duration: float = DEFAULT_DURATION, clock: Callable[[], float] = time.time):
        self.store, self.service, self.duration, self.clock = store, service, duration, clock
        self.info = registry.by_kind("Lease", "coordination.k8s.io")
        self.name = lease_name(service.address)
        self.task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        await self.sync()
        self.task = asyncio.create_task(self._run(), name="endpoint-leases")

    async def stop(self) -> None:
        """Stop renewing, delete this apiserver's Lease and publish the others."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        try:
            await self.store.storage.delete(self._target(self.name).key)
            await self.service.publish(await self._live())
        except Exception as exc:  # noqa: BLE001 - shutting down: the Lease expires anyway
            log.info("endpoint lease not withdrawn: %s", exc)

    async def sync(self) -> None:
        """Renew this apiserver's Lease, then publish every live one; never raises (logs)."""
        try:
            await self._renew()
            await self.service.publish(await self._live())
        except Exception:  # noqa: BLE001 - tried again next period
            log.exception("could not renew the apiserver endpoint lease")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.duration / 3)
            await self.sync()

    async def _renew(self) -> None:
        lease = self._lease()
        try:
            await self.store.create(self._target(None), lease, WriteOptions())
        except errors.ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
            await self.store.write(self._target(self.name), lambda current: {**current, "spec": lease["spec"]},
                                   WriteOptions())

    async def _live(self) -> list[str]:
        """Live addresses; the expired Leases are deleted on the way (best effort)."""
        listed = await self.store.storage.list(self.info.key_prefix(NAMESPACE))
        ours = [lease for lease in listed.items if LABEL in (lease["metadata"].get("labels") or {})]
        now = self.clock()
        for lease in ours:
            if expired(lease, now):
                await self._delete_expired(lease)
        return live_addresses(ours, now)

    async def _delete_expired(self, lease: dict) -> None:
        try:
            unchanged = Preconditions(resource_version=lease["metadata"]["resourceVersion"])
            await self.store.storage.delete(self._target(lease["metadata"]["name"]).key, unchanged)
            log.info("apiserver %s stopped renewing its endpoint lease: removed",
                     lease["spec"].get("holderIdentity"))
        except Exception:  # noqa: BLE001 - removed or renewed meanwhile: left as it is
            pass

    def _lease(self) -> dict:
        now = micro_time(dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc))
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": NAMESPACE, "labels": {LABEL: "true"}},
                "spec": {"holderIdentity": f"{self.service.address}:{self.service.port}",
                         "leaseDurationSeconds": max(1, round(self.duration)), "renewTime": now}}

    def _target(self, name: Optional[str]) -> Target:
        return Target(self.info, NAMESPACE, name)
