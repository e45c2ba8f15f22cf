"""Pod statuses to the API: written only when they change, retried while the apiserver
cannot be reached, the newest status of a pod replacing one not yet written.

One pod's statuses are written one at a time, in the order they were set: a status set while
the pod's previous one is on its way waits for that write to end. Two writes of one pod in
flight at once could land in either order (seen in the apiserver's audit log: a quarter of
the overlapping pairs completed out of order), so a pod's Running could land after its
Succeeded; the kubelet, remembering Succeeded as written, would never write it again and the
pod would show Running for good (a Job waiting on it, issue 15).

Writes are merge patches of `pods/{name}/status`: lists (conditions, container statuses)
are replaced whole, and top-level fields the kubelet no longer sets are sent as null.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from pkube.client.errors import ApiError, NotFound
from pkube.client.resources import PODS
from pkube.kubelet.podstatus import without_times

log = logging.getLogger(__name__)

CLEARED_FIELDS = ("reason", "message", "podIP", "podIPs", "initContainerStatuses")
RETRY_SECONDS = 1.0
WRITERS = 4


class StatusManager:
    """Holds the last status written per pod uid and a queue of pods to write."""

    def __init__(self, client):
        self.client = client
        self._written: dict[str, dict] = {}
        self._pending: dict[str, tuple[dict, dict]] = {}
        self._writing: dict[str, dict] = {}      # uid -> the status on its way now
        self._queue: asyncio.Queue = asyncio.Queue()

    def set(self, pod: dict, status: dict) -> None:
        """`pod`'s status is now `status`: queue a write if it differs from the last one (the
        one on its way, else the last written). While one of the pod's writes is on its way the
        new status only waits: that write's end queues it."""
        uid = pod["metadata"]["uid"]
        last = self._writing.get(uid, self._written.get(uid))
        if last is None:
            last = (pod.get("status") or {})
        if without_times(last) == without_times(status) and uid not in self._pending:
            return
        if uid not in self._pending and uid not in self._writing:
            self._queue.put_nowait(uid)
        self._pending[uid] = (pod, status)

    def forget(self, uid: str) -> None:
        """The pod is gone: drop what was written and what waits."""
        self._written.pop(uid, None)
        self._pending.pop(uid, None)

    def written(self, uid: str) -> Optional[dict]:
        return self._written.get(uid)

    async def run(self) -> None:
        """Write queued statuses until cancelled."""
        await asyncio.gather(*(self._writer() for _ in range(WRITERS)))

    async def _writer(self) -> None:
        while True:
            uid = await self._queue.get()
            if uid in self._writing:              # its write's end queues it again
                continue
            item = self._pending.pop(uid, None)
            if item is None:
                continue
            pod, status = item
            self._writing[uid] = status
            try:
                written = await self._write(pod, status)
            finally:
                del self._writing[uid]
            if uid in self._pending:              # a newer status came meanwhile: write it now
                self._queue.put_nowait(uid)
            elif not written:                     # nothing newer: retry this one
                self._pending[uid] = item
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._queue.put_nowait, uid)

    async def _write(self, pod: dict, status: dict) -> bool:
        """True when written, or when retrying cannot help: the pod is gone, or the apiserver
        refused the status as invalid (422, e.g. a container its pod never restarts shown
        running after it terminated); False when it should be retried."""
        meta = pod["metadata"]
        body = {"status": {**{k: None for k in CLEARED_FIELDS}, **status}}
        try:
            await self.client.patch(PODS, meta["name"], body, meta.get("namespace"), subresource="status")
        except NotFound:
            return not meta.get("annotations", {}).get("kubernetes.io/config.source") == "file"
        except ApiError as err:
            if err.code == 422:       # refused for what it says (e.g. a finished container running again)
                log.warning("pod %s/%s: status refused (%s); not retried", meta.get("namespace"), meta["name"], err)
                return True
            log.info("pod %s/%s: status not written (%s); retrying", meta.get("namespace"), meta["name"], err)
            return False
        self._written[meta["uid"]] = status
        return True
