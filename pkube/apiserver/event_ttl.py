"""Events expire: the apiserver deletes Events older than a TTL (Kubernetes' --event-ttl,
one hour by default), so a long-running cluster does not fill etcd with them.

Kubernetes attaches an etcd lease to each Event; here a sweep runs every
``interval`` seconds and deletes Events whose newest timestamp is older than
``ttl``. ``sleep`` and ``now`` are injected so tests need not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Awaitable, Callable, Optional

from pkube.apiserver.storage.interface import Conflict, NotFound, Preconditions, Storage

log = logging.getLogger(__name__)

EVENTS_PREFIX = "/registry/events/"
DEFAULT_TTL = 3600.0
DEFAULT_INTERVAL = 60.0
TIMESTAMP_FIELDS = ("lastTimestamp", "eventTime", "firstTimestamp")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def last_seen(event: dict) -> Optional[datetime.datetime]:
    """The newest time an Event speaks of (lastTimestamp, eventTime, series, creation)."""
    candidates = [event.get(name) for name in TIMESTAMP_FIELDS]
    candidates.append((event.get("series") or {}).get("lastObservedTime"))
    candidates.append((event.get("metadata") or {}).get("creationTimestamp"))
    times = [_parse(value) for value in candidates if isinstance(value, str)]
    times = [t for t in times if t is not None]
    return max(times) if times else None


def _parse(value: str) -> Optional[datetime.datetime]:
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


class EventReaper:
    """Deletes expired Events. ``start()``/``stop()`` own one background task."""

    def __init__(self, storage: Storage, ttl: float = DEFAULT_TTL, interval: float = DEFAULT_INTERVAL,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 now: Callable[[], datetime.datetime] = _utc_now):
        self.storage, self.ttl, self.interval = storage, ttl, interval
        self.sleep, self.now = sleep, now
        self._task: Optional[asyncio.Task] = None

    async def sweep_once(self) -> int:
        """Delete every expired Event now; returns how many went."""
        cutoff = self.now() - datetime.timedelta(seconds=self.ttl)
        removed, token = 0, None
        while True:
            page = await self.storage.list(EVENTS_PREFIX, limit=500, continue_token=token)
            for event in page.items:
                seen = last_seen(event)
                if seen is not None and seen < cutoff:
                    removed += await self._delete(event)
            token = page.continue_token
            if token is None:
                return removed

    async def _delete(self, event: dict) -> int:
        md = event.get("metadata") or {}
        key = f"{EVENTS_PREFIX}{md.get('namespace', '')}/{md.get('name', '')}"
        try:
            await self.storage.delete(key, Preconditions(resource_version=md.get("resourceVersion")))
        except (NotFound, Conflict):
            return 0  # gone already, or refreshed meanwhile: the next sweep decides
        return 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.sleep(self.interval)
            try:
                removed = await self.sweep_once()
                if removed:
                    log.info("deleted %d expired events", removed)
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried next interval
                log.warning("event sweep failed: %s", exc)
