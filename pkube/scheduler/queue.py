"""The scheduling queue: pending pods waiting for an attempt.

Three places, as in kube-scheduler:
- active: ready to be tried, highest spec.priority first, then oldest;
- backoff: failed recently; back in active after 1 s, 2 s, 4 s ... up to 10 s
  (per pod, by attempts);
- unschedulable: no node fits; they move out (to backoff or active) when the
  cluster changes (``move_all``: a node added or updated, a pod deleted) or
  after ``max_unschedulable`` seconds anyway.
A pod that failed while a cluster change happened during its attempt goes to
backoff, not unschedulable, so that change is not missed. ``pop`` hands a pod
out once; ``done`` ends its attempt. Called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass
from typing import Optional

from pkube.client.clock import Clock, wait_until_set
from pkube.scheduler.types import pod_key


def _scheduling_inputs(pod: dict) -> tuple:
    """What can change a pod's fit: its spec and labels (not its status, not its version)."""
    meta = pod.get("metadata") or {}
    return (pod.get("spec"), meta.get("labels"), meta.get("ownerReferences"))


@dataclass
class QueuedPod:
    """A pending pod and its scheduling history."""

    pod: dict
    key: str
    added_at: float
    attempts: int = 0
    backoff_until: float = 0.0
    cycle: int = 0                      # scheduling cycle in which it was last popped
    added_seq: int = 0                  # identifies its current entry in the active heap

    @property
    def priority(self) -> int:
        return int((self.pod.get("spec") or {}).get("priority") or 0)


class SchedulingQueue:
    """See the module docstring."""

    def __init__(self, clock: Optional[Clock] = None, initial_backoff: float = 1.0,
                 max_backoff: float = 10.0, max_unschedulable: float = 300.0):
        self.clock = clock or Clock()
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._pods: dict[str, QueuedPod] = {}          # waiting, in one of the three places
        self._where: dict[str, str] = {}               # key -> "active" | "backoff" | "unschedulable"
        self._active: list = []
        self._backoff: list = []
        self._unschedulable_since: dict[str, float] = {}   # oldest first (clock is monotonic)
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._cycle = 0
        self._move_request_cycle = -1
        self._closed = False
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pods)

    def places(self) -> list[str]:
        """Where each waiting pod is: 'active', 'backoff' or 'unschedulable' (not in flight)."""
        return list(self._where.values())

    def where(self, key: str) -> Optional[str]:
        """'active', 'backoff', 'unschedulable', 'in-flight', or None if unknown."""
        return "in-flight" if key in self._in_flight else self._where.get(key)

    def add(self, pod: dict) -> None:
        """A new pending pod (or a newer version of a queued one)."""
        key = pod_key(pod)
        if key in self._in_flight:
            self._in_flight[key].pod = pod
            return
        queued = self._pods.get(key)
        if queued is not None:
            spec_changed = _scheduling_inputs(queued.pod) != _scheduling_inputs(pod)
            queued.pod = pod
            if spec_changed and self._where[key] == "unschedulable":
                self._requeue(queued)       # it may fit now
            return
        self._push_active(QueuedPod(pod, key, self.clock.now()))

    update = add

    def delete(self, pod_or_key) -> None:
        """The pod is gone or bound: stop scheduling it."""
        key = pod_or_key if isinstance(pod_or_key, str) else pod_key(pod_or_key)
        self._pods.pop(key, None)
        self._where.pop(key, None)
        self._unschedulable_since.pop(key, None)
        self._in_flight.pop(key, None)

    def pop_nowait(self) -> Optional[QueuedPod]:
        """The next active pod, now in flight; None if none is ready."""
        self.flush()
        while self._active:
            _, _, seq, key = heapq.heappop(self._active)
            queued = self._pods.get(key)
            if queued is None or self._where.get(key) != "active" or queued.added_seq != seq:
                continue
            del self._pods[key], self._where[key]
            self._cycle += 1
            queued.cycle = self._cycle
            queued.attempts += 1
            self._in_flight[key] = queued
            return queued
        return None

    async def pop(self) -> Optional[QueuedPod]:
        """Wait for the next pod; None once closed."""
        while not self._closed:
            queued = self.pop_nowait()
            if queued is not None:
                return queued
            self._wakeup.clear()
            await wait_until_set(self.clock, self._wakeup, self._next_deadline())
        return None

    def done(self, key: str) -> None:
        """The attempt ended (bound, or handed back with ``requeue_*``)."""
        self._in_flight.pop(key, None)

    def requeue_unschedulable(self, queued: QueuedPod) -> None:
        """No node fits: park it until the cluster changes (or back off, if it changed meanwhile)."""
        if self._in_flight.pop(queued.key, None) is None:
            return                          # deleted or bound while in flight
        queued.backoff_until = self.clock.now() + self.backoff_duration(queued)
        if self._move_request_cycle >= queued.cycle:
            self._push_backoff(queued)
            return
        self._pods[queued.key] = queued
        self._where[queued.key] = "unschedulable"
        self._unschedulable_since.pop(queued.key, None)
        self._unschedulable_since[queued.key] = self.clock.now()

    def requeue_backoff(self, queued: QueuedPod) -> None:
        """An error (e.g. a failed binding): retry after the pod's back-off."""
        if self._in_flight.pop(queued.key, None) is None:
            return
        self._push_backoff(queued)

    def move_all(self) -> None:
        """The cluster changed in a way that may make unschedulable pods fit."""
        for key in list(self._unschedulable_since):      # exactly the unschedulable pods
            self._requeue(self._pods[key])
        self._move_request_cycle = self._cycle

    def flush(self) -> None:
        """Move due back-offs and long-unschedulable pods to active."""
        now = self.clock.now()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._where.get(key) == "backoff":
                self._push_active(self._pods[key])
        stale = list(itertools.takewhile(lambda key: self._unschedulable_since[key] + self.max_unschedulable <= now,
                                         self._unschedulable_since))
        for key in stale:
            self._requeue(self._pods[key])

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def backoff_duration(self, queued: QueuedPod) -> float:
        return min(self.initial_backoff * 2 ** max(queued.attempts - 1, 0), self.max_backoff)

    def _requeue(self, queued: QueuedPod) -> None:
        self._unschedulable_since.pop(queued.key, None)
        if queued.backoff_until > self.clock.now():
            self._pods[queued.key] = queued
            self._where[queued.key] = "backoff"
            heapq.heappush(self._backoff, (queued.backoff_until, next(self._seq), queued.key))
            self._wakeup.set()              # a waiting pop must learn the new deadline
        else:
            self._push_active(queued)

    def _push_backoff(self, queued: QueuedPod) -> None:
        queued.backoff_until = self.clock.now() + self.backoff_duration(queued)
        self._requeue(queued)

    def _push_active(self, queued: QueuedPod) -> None:
        queued.added_seq = next(self._seq)
        self._pods[queued.key] = queued
        self._where[queued.key] = "active"
        heapq.heappush(self._active, (-queued.priority, queued.added_at, queued.added_seq, queued.key))
        self._wakeup.set()

    def _next_deadline(self) -> Optional[float]:
        """Seconds until the next back-off ends or unschedulable pod times out; None if none."""
        candidates = []
        if self._backoff:
            candidates.append(self._backoff[0][0])
        if self._unschedulable_since:
            candidates.append(next(iter(self._unschedulable_since.values())) + self.max_unschedulable)
        return max(0.0, min(candidates) - self.clock.now()) if candidates else None
