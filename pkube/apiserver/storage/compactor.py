"""Compaction of etcd's history, keeping a window of recent revisions.

A round compacts to (current revision - window) every ``interval`` seconds, as
kube-apiserver does every ``--etcd-compaction-interval``, and sooner once more
than ``revisions`` revisions were written since the last compaction, as etcd's
own revision-mode auto-compaction would: etcd keeps every revision until it is
compacted, in its database file (mapped into its memory) and its key index, so
bounding the history by revisions bounds etcd's memory whatever the write rate
(at ~350 writes/s, five minutes are ~100,000 revisions, ~100 MiB of database).

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
DEFAULT_REVISIONS = 20_000
CHECK_EVERY = 10.0     # seconds between looks at the revision (one cheap etcd call)

log = logging.getLogger(__name__)


class Compactor:
    """Compact to (current revision - ``window``) every ``interval`` seconds, and at
    the first check (every ``CHECK_EVERY`` seconds, or ``interval`` if shorter) that
    finds more than ``revisions`` revisions written since the last compaction
    (0: only by time).

    ``sleep`` is the injected clock (``asyncio.sleep`` by default; tests pass a
    fake): the time since the last compaction is the sum of what was slept. A
    failed round (etcd unavailable) is logged and retried at the next check.
    """

    def __init__(self, storage: Storage, interval: float = DEFAULT_INTERVAL,
                 window: int = DEFAULT_WINDOW, revisions: int = DEFAULT_REVISIONS,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if interval <= 0 or window < 0 or revisions < 0:
            raise ValueError("interval must be positive, window and revisions not negative")
        self._storage = storage
        self._interval = interval
        self._window = window
        self._revisions = revisions
        self._check = min(interval, CHECK_EVERY)
        self._sleep = sleep
        self._task: Optional[asyncio.Task] = None
        self.compacted = 0  # the newest revision this compactor compacted to

    async def compact_once(self) -> Optional[int]:
        """Compact now; return the revision compacted to, or None when there
        is not yet more history than the window."""
        return await self._compact_at(await self._storage.current_revision())

    async def _compact_at(self, current: int) -> Optional[int]:
        target = current - self._window
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
        waited = 0.0
        while True:
            await self._sleep(self._check)
            waited += self._check
            try:
                if await self._round(waited >= self._interval):
                    waited = 0.0
            except StorageError as e:
                log.warning("compaction failed, retrying in %ss: %s", self._check, e)

    async def _round(self, due: bool) -> bool:
        """One check: compact when ``due`` (the interval is up) or when too many revisions
        piled up. True when the interval starts again (a compaction, or nothing to do)."""
        current = await self._storage.current_revision()
        piled_up = self._revisions and current - self._window - self.compacted > self._revisions
        if not (due or piled_up):
            return False
        revision = await self._compact_at(current)
        if revision is not None:
            log.info("compacted etcd history to revision %d", revision)
        return True
