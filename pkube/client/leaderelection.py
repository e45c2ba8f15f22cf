"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection.

One ``LeaderElector`` per process and lock (e.g. kube-system/kube-scheduler).
``run()`` tries every ``retry_period`` to acquire the Lease, which it may only
do when the Lease is free or its holder has not renewed it for
``lease_duration`` (judged by when *we* last saw the record change, so clock
skew between machines does not matter). Once leader, ``on_started_leading()``
(a coroutine function) runs as a task, and the Lease is renewed every
``retry_period``; if no renewal succeeds within ``renew_deadline`` the
elector stops: the task is cancelled, ``on_stopped_leading()`` is called and
``run()`` returns (components exit then, like kube-scheduler).

Every write carries the resourceVersion read, so two candidates racing for
one Lease cannot both win: the loser gets 409 and tries again later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from pkube.client.clock import Clock
from pkube.client.errors import AlreadyExists, ApiError, Conflict, NotFound
from pkube.client.resources import LEASES
from pkube.client.timefmt import micro_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Which Lease, who we are, and the timings (seconds) of client-go's defaults."""

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self):
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")


class LeaderElector:
    """See the module docstring. ``is_leader()`` is what callers check before acting."""

    def __init__(self, client, config: LeaderElectionConfig,
                 on_started_leading: Callable[[], Awaitable[None]],
                 on_stopped_leading: Optional[Callable[[], None]] = None,
                 clock: Optional[Clock] = None):
        self.client = client
        self.config = config
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.clock = clock or Clock()
        self._leader = False
        self._observed: Optional[tuple] = None
        self._observed_at = 0.0

    def is_leader(self) -> bool:
        return self._leader

    async def run(self) -> None:
        """Acquire, lead, and return once leadership is lost (or the task is cancelled)."""
        await self._acquire()
        self._leader = True
        log.info("%s: became leader of %s/%s", self.config.identity, self.config.namespace,
                 self.config.name)
        work = asyncio.ensure_future(self.on_started_leading())
        try:
            await self._keep_renewing(work)
        finally:
            self._leader = False
            work.cancel()
            log.info("%s: stopped leading", self.config.identity)
            if self.on_stopped_leading is not None:
                self.on_stopped_leading()

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            await self.clock.sleep(self.config.retry_period)

    async def _keep_renewing(self, work: asyncio.Future) -> None:
        while not work.done():
            await self.clock.sleep(self.config.retry_period)
            if not await self._renew_within_deadline():
                return

    async def _renew_within_deadline(self) -> bool:
        deadline = self.clock.now() + self.config.renew_deadline
        while self.clock.now() < deadline:
            if await self.try_acquire_or_renew():
                return True
            await self.clock.sleep(self.config.retry_period)
        return False

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease afterwards. API errors count as False."""
        try:
            return await self._attempt()
        except (Conflict, AlreadyExists):
            return False
        except ApiError as err:
            log.warning("%s: lease %s/%s: %s", self.config.identity, self.config.namespace,
                        self.config.name, err)
            return False

    async def _attempt(self) -> bool:
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.name, cfg.namespace)
        except NotFound:
            created = await self.client.create(LEASES, self._new_lease(), cfg.namespace)
            self._observe(created)
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != cfg.identity and not self._expired():
            return False
        updated = await self.client.replace(LEASES, self._take(lease, holder), cfg.namespace)
        self._observe(updated)
        return True

    def _new_lease(self) -> dict:
        now = micro_time(self.clock.wall())
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                "spec": {"holderIdentity": self.config.identity,
                         "leaseDurationSeconds": int(self.config.lease_duration),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}

    def _take(self, lease: dict, holder: str) -> dict:
        """The Lease renewed by us (a new acquisition when someone else held it)."""
        now = micro_time(self.clock.wall())
        spec = dict(lease.get("spec") or {})
        if holder != self.config.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec.update(holderIdentity=self.config.identity, renewTime=now,
                    leaseDurationSeconds=int(self.config.lease_duration))
        return {**lease, "spec": spec}

    def _observe(self, lease: dict) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"))
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock.now()

    def _expired(self) -> bool:
        return self._observed_at + self.config.lease_duration <= self.clock.now()

    async def release(self) -> None:
        """Give the Lease up at shutdown so a standby need not wait for it to expire.

        Safe to call when not leading: the Lease is only cleared if we hold it.
        """
        try:
            lease = await self.client.get(LEASES, self.config.name, self.config.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
                lease["spec"]["holderIdentity"] = ""
                await self.client.replace(LEASES, lease, self.config.namespace)
        except ApiError as err:
            log.warning("%s: release lease: %s", self.config.identity, err)
