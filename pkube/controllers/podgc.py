"""Pod garbage collector: deletes pods nobody else will, as Kubernetes' podgc controller.

Every ``period`` seconds (one queue key, ``gc``, re-added after each pass), from the caches:
1. terminated pods (Succeeded / Failed) beyond ``threshold`` (--terminated-pod-gc-threshold,
   12500; 0 turns this off), oldest first;
2. orphaned pods: bound to a node that does not exist. A node missing from the cache is
   quarantined for ``quarantine`` seconds (it may just be registering) and then checked with
   a GET; if it is still gone the pod is marked Failed with a DisruptionTarget condition
   (reason DeletionByPodGC) and deleted, terminating ones included;
3. unscheduled pods that are terminating (no kubelet will ever finish their deletion).
Deletions use grace period 0, as the kubelet would have finished them. Time comes from the
injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from pkube.client.errors import Conflict, NotFound
from pkube.client.resources import NODES, PODS
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.podcontrol import TERMINAL_PHASES

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 12500
DEFAULT_PERIOD = 20.0
DEFAULT_QUARANTINE = 40.0
GC_KEY = "gc"


def terminated_to_delete(pods: list[dict], threshold: int) -> list[dict]:
    """The terminated pods beyond ``threshold``, oldest first (none when threshold <= 0)."""
    terminated = [p for p in pods if (p.get("status") or {}).get("phase") in TERMINAL_PHASES
                  and not p["metadata"].get("deletionTimestamp")]
    excess = len(terminated) - threshold
    if threshold <= 0 or excess <= 0:
        return []
    terminated.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"].get("name", "")))
    return terminated[:excess]


def unscheduled_terminating(pods: list[dict]) -> list[dict]:
    return [p for p in pods if p["metadata"].get("deletionTimestamp") and not (p.get("spec") or {}).get("nodeName")]


def pods_on_missing_nodes(pods: list[dict], nodes: set[str]) -> dict[str, list[dict]]:
    """node name -> its pods, for the nodes not in ``nodes``."""
    found: dict[str, list[dict]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node not in nodes:
            found.setdefault(node, []).append(pod)
    return found


def disruption_status(pod: dict, now) -> dict:
    """The status patch marking an orphaned pod Failed, as podgc does before deleting it."""
    conditions = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "DisruptionTarget"]
    conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                       "message": "PodGC: node no longer exists", "lastTransitionTime": rfc3339(now)})
    status = {"conditions": conditions}
    if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
        status["phase"] = "Failed"
    return {"status": status}


class PodGCController(Controller):
    name = "podgc"

    def __init__(self, ctx: ControllerContext, threshold: int = DEFAULT_THRESHOLD,
                 period: float = DEFAULT_PERIOD, quarantine: float = DEFAULT_QUARANTINE):
        super().__init__(ctx, workers=1)
        self.threshold, self.period, self.quarantine = threshold, period, quarantine
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        self.missing_since: dict[str, float] = {}     # node name -> when first seen missing
        self.queue.add(GC_KEY)

    async def reconcile(self, key: str) -> None:
        """One collection pass; the next one ``period`` seconds later."""
        try:
            pods = self.pods.store.list()
            await self._delete_all(terminated_to_delete(pods, self.threshold), "terminated pod beyond the threshold")
            await self._delete_all(unscheduled_terminating(pods), "unscheduled terminating pod")
            await self._collect_orphans(pods)
        finally:
            self.queue.add_after(GC_KEY, self.period)

    async def _collect_orphans(self, pods: list[dict]) -> None:
        known = {n["metadata"]["name"] for n in self.nodes.store.list()}
        missing = pods_on_missing_nodes(pods, known)
        now = self.clock.now()
        self.missing_since = {n: self.missing_since.get(n, now) for n in missing}
        for node, orphans in missing.items():
            if now - self.missing_since[node] < self.quarantine:
                self.queue.add_after(GC_KEY, self.quarantine)
                continue
            if await self._node_exists(node):
                continue
            for pod in orphans:
                await self._mark_failed(pod)
            await self._delete_all(orphans, f"pod of the deleted node {node}")

    async def _node_exists(self, name: str) -> bool:
        try:
            await self.client.get(NODES, name)
            return True
        except NotFound:
            return False

    async def _mark_failed(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], disruption_status(pod, self.clock.wall()),
                                    meta["namespace"], subresource="status")
        except NotFound:
            pass

    async def _delete_all(self, pods: list[dict], why: str) -> None:
        if pods:
            log.info("podgc: deleting %d %s(s)", len(pods), why)
        results = await asyncio.gather(*(self._force_delete(p) for p in pods), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]

    async def _force_delete(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta.get("uid")})
        except (NotFound, Conflict):
            pass


def _option(ctx: ControllerContext, name: str, default, kind=float):
    value: Optional[object] = ctx.options.get(name)
    return default if value is None else kind(value)


def new_controller(ctx: ControllerContext) -> PodGCController:
    return PodGCController(ctx, threshold=_option(ctx, "terminated_pod_gc_threshold", DEFAULT_THRESHOLD, int),
                           period=_option(ctx, "podgc_period", DEFAULT_PERIOD),
                           quarantine=_option(ctx, "podgc_quarantine", DEFAULT_QUARANTINE))
