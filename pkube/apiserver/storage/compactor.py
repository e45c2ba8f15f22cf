"""Periodic compaction of etcd's history, keeping a window of recent revisions.

Several apiservers may each run one: compacting to a revision already
compacted is a no-op, so they never conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable, Optional

from pkube.apiserver.storage.interface import Storage, StorageError

DEFAULT_INTERVAL = 300.0
DEFAULT_WINDOW = 10_000

log = logging.getLogger(__name__)


class Compactor:
    """Every ``interval`` seconds, compact to (current revision - ``window``).

    ``sleep`` is the injected clock (``asyncio.sleep`` by default; tests pass a
    fake). A failed round (etcd unavailable) is logged and retried at the next
    interval.
    """

    def __init__(self, storage: Storage, interval: float = DEFAULT_INTERVAL,
                 window: int = DEFAULT_WINDOW,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if interval <= 0 or window < 0:
            raise ValueError("interval must be positive and window not negative")
        self._storage = storage
        self._interval = interval
        self._window = window
        self._sleep = sleep
        self._task: Optional[asyncio.Task] = None
        self.compacted = 0  # the newest revision this compactor compacted to

    async def compact_once(self) -> Optional[int]:
        """Compact now; return the revision compacted to, or None when there
        is not yet more history than the window."""
        target = await self._storage.current_revision() - self._window
        if target <= self.compacted:
            return None
        await self._storage.compact(target)
        self.compacted = target
        return target

    def start(self) -> None:
        """Run rounds in the background until ``stop()``; call inside a running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the background rounds and wait for them to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._sleep(self._interval)
            try:
                revision = await self.compact_once()
            except StorageError as e:
                log.warning("compaction failed, retrying in %ss: %s", self._interval, e)
                continue
            if revision is not None:
                log.info("compacted etcd history to revision %d", revision)
