"""ReplicaSet controller: keep ``spec.replicas`` pods of the template, report status.

Per ReplicaSet key, ``reconcile``:
1. claims pods (adopt matching orphans, release non-matching ones it owns);
2. if its expectations are satisfied (the informer has seen the creates and
   deletes it issued last time) and it is not being deleted, creates the
   missing pods in slow-start batches (1, 2, 4, ... as Kubernetes, at most
   ``burst`` per pass; a failure stops the pass) or deletes the surplus,
   unscheduled / pending / not-ready / newest first;
3. writes status (replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas, observedGeneration) through the status subresource,
   and comes back when a ready pod will become available (minReadySeconds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.client.errors import ApiError
from pkube.client.resources import PODS, REPLICASETS
from pkube.client.store import index_by_namespace, object_key
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext, Expectations, PermanentError
from pkube.controllers.podcontrol import (CONTROLLER_INDEX, PodControl, available_in, claim, claim_candidates,
                                    controller_ref, deletion_rank, index_by_controller, is_active, is_ready,
                                    slow_start)

log = logging.getLogger(__name__)
DEFAULT_BURST = 500


class ReplicaSetController(Controller):
    """Subclasses for other kinds of replicated pods (ReplicationController) set ``name``,
    ``resource``, ``kind`` and ``selector_of``."""

    name = "replicaset"
    resource = REPLICASETS
    kind = "ReplicaSet"

    @staticmethod
    def selector_of(obj: dict) -> dict:
        """The object's spec.selector as a metav1.LabelSelector."""
        return obj["spec"].get("selector")

    def __init__(self, ctx: ControllerContext, pod_control: Optional[PodControl] = None,
                 workers: int = 5, burst: int = DEFAULT_BURST):
        super().__init__(ctx, workers)
        self.pod_control = pod_control or PodControl(ctx.client)
        self.burst = burst
        self.expectations = Expectations(ctx.clock)
        self.rs_informer = ctx.informers.informer(self.resource, {"namespace": index_by_namespace})
        self.pod_informer = ctx.informers.informer(PODS, {CONTROLLER_INDEX: index_by_controller})
        self.rs_informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pod_informer.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- handlers: enqueue only -------------------------------------------------

    def _owner_key(self, pod: dict) -> Optional[str]:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        key = f"{pod['metadata'].get('namespace')}/{ref['name']}"
        rs = self.rs_informer.store.get(key)
        return key if rs is not None and rs["metadata"].get("uid") == ref.get("uid") else None

    def _enqueue_matching(self, pod: dict) -> None:
        """An orphan: every ReplicaSet of its namespace that selects it may adopt it."""
        labels = pod["metadata"].get("labels") or {}
        for rs in self.rs_informer.store.by_index("namespace", pod["metadata"].get("namespace") or ""):
            if _selects(self.selector_of(rs), labels):
                self.enqueue(rs)

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is None:
            self._enqueue_matching(pod)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.observed_delete(key, object_key(pod))
        else:
            self.expectations.observed_add(key)
        self.queue.add(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        key = self._owner_key(new)
        if new["metadata"].get("deletionTimestamp") and key is not None:
            self.expectations.observed_delete(key, object_key(new))
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            self.queue.add(key)
        elif (old["metadata"].get("labels") != new["metadata"].get("labels")
              or controller_ref(old) is not None):
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_delete(key, object_key(pod))
            self.queue.add(key)

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.rs_informer.store.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        try:
            selector = label_selector_from_dict(self.selector_of(rs))
        except SelectorError as err:
            raise PermanentError(f"invalid selector: {err}") from None
        candidates = [p for p in claim_candidates(self.pod_informer.store, rs) if is_active(p)]
        pods = await claim(self.client, PODS, rs, candidates,
                           lambda p: selector.matches(p["metadata"].get("labels")))
        deleted: set = set()
        failure: Optional[ApiError] = None
        if self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp"):
            try:
                deleted = await self.manage_replicas(key, rs, pods)
            except ApiError as err:
                failure = err
        # the status leaves out the pods just deleted and those deleted earlier that the cache
        # still shows as active, so that a Deployment reading observedGeneration never counts
        # them as available (it would scale old ReplicaSets down too far)
        going = deleted | self.expectations.pending_deletes(key)
        await self.update_status(rs, [p for p in pods if object_key(p) not in going], failure)
        if failure is not None:
            raise failure

    async def manage_replicas(self, key: str, rs: dict, pods: list[dict]) -> set:
        """Create or delete pods so that ``len(pods)`` moves toward spec.replicas;
        the keys of the pods deleted."""
        diff = len(pods) - int(rs["spec"].get("replicas", 1))
        if diff < 0:
            await self._create(key, rs, min(-diff, self.burst))
        elif diff > 0:
            victims = pods_to_delete(pods, min(diff, self.burst))
            await self._delete(key, rs, victims)
            return {object_key(p) for p in victims}
        return set()

    async def _create(self, key: str, rs: dict, count: int) -> None:
        self.expectations.expect(key, adds=count)
        namespace = rs["metadata"]["namespace"]
        template = rs["spec"].get("template") or {}
        created, error = await slow_start(count, lambda: self.pod_control.create_pod(namespace, template, rs))
        for _ in range(count - created):
            self.expectations.observed_add(key)
        if created:
            self.ctx.recorder.emit(rs, "Normal", "SuccessfulCreate", f"Created {created} pod(s)")
        if error is not None:
            self.ctx.recorder.emit(rs, "Warning", "FailedCreate", f"Error creating: {error}")
            raise error

    async def _delete(self, key: str, rs: dict, victims: list[dict]) -> None:
        keys = [object_key(p) for p in victims]
        self.expectations.expect(key, deletes=keys)
        results = await asyncio.gather(
            *(self.pod_control.delete_pod(p["metadata"]["namespace"], p["metadata"]["name"])
              for p in victims), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        for pod_key, result in zip(keys, results):
            if isinstance(result, Exception):
                self.expectations.observed_delete(key, pod_key)
        self.ctx.recorder.emit(rs, "Normal", "SuccessfulDelete",
                               f"Deleted {len(victims) - len(errors)} pod(s)")
        if errors:
            raise errors[0]

    async def update_status(self, rs: dict, pods: list[dict], failure: Optional[ApiError] = None) -> None:
        """Write status when it changed (with a ReplicaFailure condition while creating or
        deleting pods fails); come back when a ready pod becomes available."""
        status, wait = replica_set_status(rs, pods, self.clock.wall())
        if wait is not None:
            self.queue.add_after(object_key(rs), wait + 0.1)
        current = rs.get("status") or {}
        conditions = failure_conditions(current, failure, len(pods) < int(rs["spec"].get("replicas", 1)),
                                        self.clock.wall())
        if conditions != (current.get("conditions") or []):
            status["conditions"] = conditions or None
        if all(current.get(k, 0) == v for k, v in status.items()):
            return
        await self.client.patch(self.resource, rs["metadata"]["name"], {"status": status},
                                rs["metadata"]["namespace"], subresource="status")


def _selects(selector, labels: dict) -> bool:
    """An empty, missing or invalid selector selects nothing (adoption lookups skip such owners)."""
    try:
        parsed = label_selector_from_dict(selector)
    except SelectorError:
        return False
    return not parsed.empty and parsed.matches(labels)


def failure_conditions(current: dict, failure: Optional[ApiError], creating: bool, now) -> list[dict]:
    """The status conditions: ReplicaFailure (FailedCreate / FailedDelete) while pod writes
    fail, kept as is while they still fail, dropped once they succeed."""
    others = [c for c in current.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    if failure is None:
        return others
    old = next((c for c in current.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
    if old is not None:
        return current["conditions"]
    reason = "FailedCreate" if creating else "FailedDelete"
    return others + [{"type": "ReplicaFailure", "status": "True", "reason": reason,
                      "message": failure.message or str(failure), "lastTransitionTime": rfc3339(now)}]


def pods_to_delete(pods: list[dict], count: int) -> list[dict]:
    """The ``count`` pods a scale-down removes first."""
    return sorted(pods, key=deletion_rank)[:count]


def replica_set_status(rs: dict, pods: list[dict], now) -> tuple[dict, Optional[float]]:
    """The status of ``rs`` given the pods it owns, and the seconds until the next pod
    becomes available (None if none is waiting)."""
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    waits = [available_in(p, min_ready, now) for p in pods]
    pending = [w for w in waits if w]
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(1 for p in pods if _has_labels(p, template_labels)),
        "readyReplicas": sum(1 for p in pods if is_ready(p)),
        "availableReplicas": sum(1 for w in waits if w == 0.0),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    return status, (min(pending) if pending else None)


def _has_labels(pod: dict, labels: dict) -> bool:
    have = pod["metadata"].get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def new_controller(ctx: ControllerContext) -> ReplicaSetController:
    return ReplicaSetController(ctx, burst=int(ctx.options.get("replicaset_burst", DEFAULT_BURST)))
