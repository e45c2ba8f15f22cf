"""Disruption controller: the status of every PodDisruptionBudget, as Kubernetes'
pkg/controller/disruption computes it.

Per budget key, ``reconcile``:
1. the pods of the budget's namespace its selector matches (a null selector matches none,
   an empty one all);
2. expectedPods and desiredHealthy (``budget_counts``): ``minAvailable: N`` needs N of the
   matched pods; a percentage, or ``maxUnavailable``, is taken of the summed scale of the
   pods' controllers (a Deployment for its ReplicaSets' pods, a ReplicaSet, StatefulSet or
   ReplicationController), each counted once;
3. currentHealthy: Ready pods not being deleted and not in ``status.disruptedPods`` (pods the
   eviction subresource let go within the last 2 minutes); entries older than that, or of
   pods gone or going, leave the map, and the key comes back when the next one expires;
4. disruptionsAllowed = currentHealthy - desiredHealthy (never below 0; 0 without expected
   pods), observedGeneration, and the DisruptionAllowed condition, written through the
   status subresource only when something changed.
A pod without a controller (for a percentage or maxUnavailable) or whose controller is not
known makes the sync fail safe: disruptionsAllowed 0 and DisruptionAllowed False, reason
SyncFailed, with a Warning Event.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable, Optional

from pkube.api.disruption import scaled_value, set_disruption_allowed
from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.client.resources import (DEPLOYMENTS, PODDISRUPTIONBUDGETS, PODS, REPLICASETS, REPLICATIONCONTROLLERS,
                              STATEFULSETS)
from pkube.client.store import index_by_namespace
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext, split_key
from pkube.controllers.podcontrol import controller_ref, is_ready, parse_time

log = logging.getLogger(__name__)

DELETION_TIMEOUT = dt.timedelta(minutes=2)


class NoController(Exception):
    """A pod the budget needs a controller's scale for has none that is known."""


@dataclass(frozen=True)
class Counts:
    expected: int
    desired_healthy: int


# --------------------------------------------------------------------------- pure arithmetic

def budget_counts(pdb: dict, pods: list[dict], scale_of: Callable[[dict], int]) -> Counts:
    """expectedPods and desiredHealthy of ``pdb`` over its matched ``pods``; ``scale_of(pods)``
    is the summed scale of their controllers (raises NoController)."""
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        expected = scale_of(pods)
        unavailable = scaled_value(spec["maxUnavailable"], expected, True)
        return Counts(expected, max(0, expected - unavailable))
    minimum = spec.get("minAvailable")
    if minimum is None:
        return Counts(0, 0)
    if isinstance(minimum, int):
        return Counts(len(pods), minimum)
    expected = scale_of(pods)
    return Counts(expected, scaled_value(minimum, expected, True))


def kept_disruptions(pdb: dict, pods: list[dict], now: dt.datetime) -> tuple[dict, Optional[dt.datetime]]:
    """The entries of status.disruptedPods still to be honoured (pod there, not being deleted,
    evicted less than 2 minutes ago) and when the first of them expires (None: none)."""
    recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
    kept: dict = {}
    recheck: Optional[dt.datetime] = None
    for pod in pods:
        name = pod["metadata"]["name"]
        since = parse_time(recorded.get(name))
        if since is None or pod["metadata"].get("deletionTimestamp"):
            continue
        expires = since + DELETION_TIMEOUT
        if expires > now:
            kept[name] = recorded[name]
            recheck = expires if recheck is None else min(recheck, expires)
    return kept, recheck


def current_healthy(pods: list[dict], disrupted: dict) -> int:
    """Ready pods that are neither being deleted nor just evicted."""
    return sum(1 for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp")
               and p["metadata"]["name"] not in disrupted)


def new_status(pdb: dict, counts: Counts, healthy: int, disrupted: dict, now: str) -> dict:
    """The status the budget should have (conditions kept but DisruptionAllowed's)."""
    allowed = healthy - counts.desired_healthy
    if counts.expected <= 0 or allowed <= 0:
        allowed = 0
    status = {"currentHealthy": healthy, "desiredHealthy": counts.desired_healthy,
              "expectedPods": counts.expected, "disruptionsAllowed": allowed,
              "observedGeneration": pdb["metadata"].get("generation", 1),
              "conditions": list((pdb.get("status") or {}).get("conditions") or [])}
    if disrupted:
        status["disruptedPods"] = disrupted
    set_disruption_allowed(status, allowed > 0, now)
    return status


def failed_status(pdb: dict, message: str, now: str) -> dict:
    """Fail safe: nothing may be disrupted while the budget cannot be computed."""
    status = dict(pdb.get("status") or {})
    status.update(disruptionsAllowed=0, observedGeneration=pdb["metadata"].get("generation", 1))
    set_disruption_allowed(status, False, now, reason="SyncFailed", message=message)
    return status


# --------------------------------------------------------------------------- the controller

class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        super().__init__(ctx, workers)
        by_ns = {"namespace": index_by_namespace}
        self.pdbs = ctx.informers.informer(PODDISRUPTIONBUDGETS, by_ns)
        self.pods = ctx.informers.informer(PODS, by_ns)
        self.scalers = {"ReplicaSet": ctx.informers.informer(REPLICASETS),
                        "Deployment": ctx.informers.informer(DEPLOYMENTS),
                        "StatefulSet": ctx.informers.informer(STATEFULSETS),
                        "ReplicationController": ctx.informers.informer(REPLICATIONCONTROLLERS)}
        self.pdbs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handlers(self._pod_changed, lambda old, new: self._pod_changed(new, old), self._pod_changed)

    def _pod_changed(self, pod: dict, old: Optional[dict] = None) -> None:
        """Enqueue every budget of the pod's namespace that selects it (before or after)."""
        namespace = pod["metadata"].get("namespace") or ""
        label_sets = [pod["metadata"].get("labels") or {}]
        if old is not None:
            label_sets.append(old["metadata"].get("labels") or {})
        for pdb in self.pdbs.store.by_index("namespace", namespace):
            if any(_selects(pdb, labels) for labels in label_sets):
                self.enqueue(pdb)

    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.store.get(key)
        if pdb is None:
            return
        namespace, _ = split_key(key)
        pods = [p for p in self.pods.store.by_index("namespace", namespace)
                if _selects(pdb, p["metadata"].get("labels") or {})]
        now = self.clock.wall()
        stamp = rfc3339(now)
        try:
            counts = budget_counts(pdb, pods, self.expected_scale)
        except (NoController, ValueError) as err:
            self.ctx.recorder.emit(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                   f"Failed to calculate the number of expected pods: {err}")
            await self._write(pdb, failed_status(pdb, str(err), stamp))
            return
        disrupted, recheck = kept_disruptions(pdb, pods, now)
        await self._write(pdb, new_status(pdb, counts, current_healthy(pods, disrupted), disrupted, stamp))
        if recheck is not None:
            self.queue.add_after(key, max(0.0, (recheck - now).total_seconds()))

    def expected_scale(self, pods: list[dict]) -> int:
        """The summed spec.replicas of the pods' controllers, each counted once (the pods of
        two ReplicaSets of one Deployment count the Deployment once)."""
        replicas: dict[str, int] = {}     # uid of the scaled object -> its spec.replicas
        refs_seen: set = set()
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                raise NoController(f'found no controller ref for pod "{pod["metadata"]["name"]}"')
            if ref.get("uid") in refs_seen:
                continue
            owner = self._scaler(pod["metadata"].get("namespace"), ref)
            if owner is None:
                raise NoController(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            refs_seen.add(ref.get("uid"))
            replicas[owner["metadata"]["uid"]] = int((owner.get("spec") or {}).get("replicas", 1))
        return sum(replicas.values())

    def _scaler(self, namespace: Optional[str], ref: dict) -> Optional[dict]:
        """The object whose scale counts for a pod controlled by ``ref``: the Deployment of a
        ReplicaSet a Deployment controls, else the controller itself (when its kind is known)."""
        informer = self.scalers.get(ref.get("kind"))
        owner = informer.store.get(f"{namespace}/{ref.get('name')}") if informer is not None else None
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        if ref.get("kind") == "ReplicaSet":
            parent = controller_ref(owner)
            if parent is not None and parent.get("kind") == "Deployment":
                return self._scaler(namespace, parent)
        return owner

    async def _write(self, pdb: dict, status: dict) -> None:
        if (pdb.get("status") or {}) == status:
            return
        updated = {**pdb, "status": status}
        await self.client.replace(PODDISRUPTIONBUDGETS, updated, pdb["metadata"]["namespace"], subresource="status")


def _selects(pdb: dict, labels: dict) -> bool:
    try:
        return label_selector_from_dict((pdb.get("spec") or {}).get("selector")).matches(labels)
    except SelectorError:
        return False


def new_controller(ctx: ControllerContext) -> DisruptionController:
    return DisruptionController(ctx)
