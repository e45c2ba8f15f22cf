"""An Event recorder that aggregates repeats, like client-go's EventRecorder.

``await recorder.event(obj, "Warning", "FailedScheduling", message)`` creates a
core/v1 Event about ``obj``; the same (object, type, reason, message) again
patches that Event's ``count`` and ``lastTimestamp`` instead of creating a new
one. Events are best effort: failures are logged, never raised.

Components on a hot path use ``emit(...)`` instead: it never waits, it puts
the event in a bounded buffer that ``run()`` (one task) drains, and drops it
when the buffer is full (``dropped`` counts them), like client-go's
broadcaster, so Events never slow down the work they describe.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import Optional

from pkube.client.clock import Clock
from pkube.client.errors import ApiError, NotFound
from pkube.client.resources import EVENTS
from pkube.client.timefmt import rfc3339

log = logging.getLogger(__name__)
EVENT_TYPES = ("Normal", "Warning")


def involved_object(obj: dict) -> dict:
    """The ObjectReference an Event points at."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "name": meta.get("name"),
           "namespace": meta.get("namespace"), "uid": meta.get("uid"),
           "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Records Events from one component (``source.component``), aggregating repeats."""

    def __init__(self, client, component: str, host: Optional[str] = None,
                 clock: Optional[Clock] = None, cache_size: int = 4096, buffer: int = 1000):
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock or Clock()
        self.cache_size = cache_size
        self._seen: OrderedDict = OrderedDict()    # aggregation key -> (namespace, name, count)
        self._seq = itertools.count()
        self._buffer: asyncio.Queue = asyncio.Queue(maxsize=buffer)
        self.dropped = 0

    def emit(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Queue one occurrence for ``run()``; dropped (and counted) if the buffer is full."""
        try:
            self._buffer.put_nowait((obj, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        """Write emitted events, one at a time, until cancelled."""
        while True:
            item = await self._buffer.get()
            await self.event(*item)

    def pending(self) -> int:
        return self._buffer.qsize()

    async def event(self, obj: dict, type_: str, reason: str, message: str) -> Optional[dict]:
        """Record one occurrence; the Event written, or None if writing failed."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, not {type_!r}")
        ref = involved_object(obj)
        key = (ref.get("uid") or ref.get("kind"), ref.get("namespace"), ref.get("name"),
               type_, reason, message)
        try:
            return await self._record(key, ref, type_, reason, message)
        except ApiError as err:
            log.warning("event %s %s on %s: %s", type_, reason, ref.get("name"), err)
            return None

    async def _record(self, key, ref, type_, reason, message) -> dict:
        now = rfc3339(self.clock.wall())
        seen = self._seen.get(key)
        if seen is not None:
            namespace, name, count = seen
            try:
                event = await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": now},
                                                namespace)
                self._remember(key, event)
                return event
            except NotFound:
                pass
        event = await self.client.create(EVENTS, self._new_event(ref, type_, reason, message, now),
                                         ref.get("namespace") or "default")
        self._remember(key, event)
        return event

    def _new_event(self, ref: dict, type_: str, reason: str, message: str, now: str) -> dict:
        wall = self.clock.wall()
        name = f"{ref.get('name', 'unknown')}.{int(wall.timestamp() * 1e9) + next(self._seq):x}"
        source = {"component": self.component, **({"host": self.host} if self.host else {})}
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ref.get("namespace") or "default"},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1}

    def _remember(self, key, event: dict) -> None:
        meta = event.get("metadata") or {}
        self._seen[key] = (meta.get("namespace"), meta.get("name"), int(event.get("count") or 1))
        self._seen.move_to_end(key)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)
