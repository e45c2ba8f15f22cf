"""DaemonSet controller: one pod per eligible node, rolling updates, status.

Per DaemonSet key, ``reconcile``:
1. claims its pods and ControllerRevisions (``controllers.history``); the
   current template's revision gives the hash new pods carry in
   ``controller-revision-hash``;
2. maps pods to nodes (``spec.nodeName``, or for a pod not yet bound the node
   its required affinity names) and, unless the set is being deleted,
   ``plan`` decides per node, as Kubernetes' podsShouldBeOnNode does, except on
   nodes with creates or deletes issued but not yet seen in the cache
   (``NodeExpectations``: pending nodes count as unavailable; the other nodes
   are acted on without waiting for the cache to show every earlier write): a node
   that should run the pod and has none gets one; failed pods are deleted;
   extra pods beyond one (two while surging) go; pods on nodes that should
   not keep them (or that no longer exist) go; then RollingUpdate replaces old
   pods within maxUnavailable (delete old, then the node gets a new one) or
   maxSurge (a new pod next to the old one, the old one deleted once the new
   one is available); OnDelete only replaces pods the user deletes;
3. writes status, while the pod writes are in flight (desiredNumberScheduled, currentNumberScheduled,
   numberReady, numberAvailable, numberUnavailable, updatedNumberScheduled,
   numberMisscheduled, observedGeneration);
4. deletes revisions beyond revisionHistoryLimit no pod uses.

Pods are placed the upstream way: each carries a required node affinity
``matchFields metadata.name In [<node>]`` and the default scheduler binds it.
Which nodes are eligible is decided by ``controllers.daemonset_nodes``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from typing import Optional

from pkube.api.selectors import SelectorError, label_selector_from_dict, spec_selector_selects
from pkube.client.clock import Clock
from pkube.client.errors import NotFound
from pkube.client.resources import DAEMONSETS, NODES, PODS
from pkube.client.store import index_by_namespace, object_key
from pkube.controllers import history
from pkube.controllers.base import Controller, ControllerContext, PermanentError
from pkube.controllers.daemonset_nodes import EligibilityCache, target_node, with_node_affinity
from pkube.controllers.deployment_util import scaled_value
from pkube.controllers.podcontrol import (CONTROLLER_INDEX, available_in, claim, claim_candidates, controller_ref,
                                    index_by_controller, is_ready, owner_reference, slow_start)

log = logging.getLogger(__name__)

DEFAULT_BURST = 500
FIRST_BATCH = 16        # creates in the first slow-start batch (then 32, 64, ...)
EXPECTATIONS_TIMEOUT = 300.0


# -- the per-node plan (pure) ---------------------------------------------------------


def new_pod(ds: dict, node_name: str, digest: str) -> dict:
    """A daemon pod of ``ds``'s template for ``node_name``, labelled with the revision hash."""
    template = history.template_of(ds)
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {}, **{history.HASH_LABEL: digest})
    meta = {"generateName": ds["metadata"]["name"] + "-", "namespace": ds["metadata"]["namespace"],
            "labels": labels, "ownerReferences": [owner_reference(ds)]}
    if tmeta.get("annotations"):
        meta["annotations"] = copy.deepcopy(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": with_node_affinity(template.get("spec") or {}, node_name)}


def rolling_params(ds: dict, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of nodes (percentages of ``desired`` rounded up);
    (0, 1) when both come out 0, as Kubernetes does."""
    rolling = ((ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {})
    surge = scaled_value(rolling.get("maxSurge") or 0, desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired, round_up=True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def by_age(pods: list[dict]) -> list[dict]:
    """Oldest first; among equals, running before pending (podByCreationTimestampAndPhase)."""
    return sorted(pods, key=lambda p: ((p["metadata"].get("creationTimestamp") or ""),
                                       (p.get("status") or {}).get("phase") != "Running",
                                       p["metadata"].get("name") or ""))


def split_by_revision(pods: list[dict], digest: str) -> tuple[Optional[dict], Optional[dict], bool]:
    """(new pod, old pod, ok) of one node's live pods; ok is False with two of a kind
    (Kubernetes' findUpdatedPodsOnNode: the manage step cleans such a node up first)."""
    new = old = None
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if history.pod_revision(pod) == digest:
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def is_failed(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Failed"


class Plan:
    """What one pass does: nodes to get a pod, pods to delete (by key -> pod), and of those
    the keys of pods whose node is gone (deleted at once: no kubelet will confirm them).
    ``deletes_first``: the creates wait for the deletes (a surge keeps the pod count bound)."""

    def __init__(self):
        self.create: list[str] = []
        self.delete: dict[str, dict] = {}
        self.force: set[str] = set()
        self.deletes_first = False

    def drop(self, pods, force: bool = False) -> None:
        for pod in pods:
            if force or not pod["metadata"].get("deletionTimestamp"):
                self.delete[object_key(pod)] = pod
                if force:
                    self.force.add(object_key(pod))


def manage_plan(runs: dict[str, tuple[bool, bool]], by_node: dict[str, list[dict]], digest: str,
                surge: bool, pending: frozenset = frozenset()) -> Plan:
    """Per node (``runs`` from ``eligibility``), what Kubernetes' podsShouldBeOnNode does;
    pods of nodes that do not exist go. ``pending`` nodes (writes not yet in the cache) are left alone."""
    plan = Plan()
    for node_name, pods in by_node.items():
        if node_name not in runs and node_name not in pending:
            plan.drop(pods, force=True)
    for node_name, (should_run, should_continue) in runs.items():
        if node_name in pending:
            continue
        pods = by_node.get(node_name, [])
        if should_run and not pods:
            plan.create.append(node_name)
        elif should_continue:
            plan.drop(p for p in pods if is_failed(p))
            running = by_age([p for p in pods if not is_failed(p) and not p["metadata"].get("deletionTimestamp")])
            plan.drop(running[1:] if not surge else _surplus_while_surging(running, digest))
        else:
            plan.drop(pods)
    return plan


def _surplus_while_surging(running: list[dict], digest: str) -> list[dict]:
    """With maxSurge a node may have the oldest new pod and the oldest old one; the rest go."""
    keep_new = next((p for p in running if history.pod_revision(p) == digest), None)
    keep_old = next((p for p in running if history.pod_revision(p) != digest), None)
    return [p for p in running if p is not keep_new and p is not keep_old]


@dataclass
class _Pending:
    creates: int = 0
    deletes: set = field(default_factory=set)
    since: float = 0.0


class NodeExpectations:
    """Pod creates and deletes a DaemonSet's passes issued that the cache has not shown yet, per
    set and node: Kubernetes' expectations, kept per node instead of per set. A pass leaves
    a pending node alone (it counts as unavailable) and acts on the other nodes at once, instead
    of waiting until the cache has caught up with every write of the previous pass. A create is
    seen when a pod of the set for the node is added; a delete when the pod shows a
    deletionTimestamp or is gone. A record older than ``timeout`` seconds no longer holds."""

    def __init__(self, clock: Clock, timeout: float = EXPECTATIONS_TIMEOUT):
        self.clock, self.timeout = clock, timeout
        self._sets: dict[str, dict[str, _Pending]] = {}

    def expect(self, key: str, node: str, creates: int = 0, deletes=()) -> None:
        """Record writes about to be issued for ``node`` (before issuing them)."""
        record = self._sets.setdefault(key, {}).setdefault(node, _Pending())
        record.creates += creates
        record.deletes.update(deletes)
        record.since = self.clock.now()

    def created(self, key: str, node: Optional[str]) -> None:
        """A create for ``node`` is seen (or failed)."""
        record = self._sets.get(key, {}).get(node)
        if record is not None and record.creates > 0:
            record.creates -= 1

    def deleted(self, key: str, node: Optional[str], pod_key: str) -> None:
        """The deletion of ``pod_key`` is seen (or failed)."""
        record = self._sets.get(key, {}).get(node)
        if record is not None:
            record.deletes.discard(pod_key)

    def pending(self, key: str) -> frozenset:
        """The nodes of ``key`` with writes not yet seen (settled and expired records are dropped)."""
        nodes = self._sets.get(key, {})
        now = self.clock.now()
        for node in [n for n, r in nodes.items()
                     if (r.creates <= 0 and not r.deletes) or now - r.since > self.timeout]:
            del nodes[node]
        return frozenset(nodes)

    def forget(self, key: str) -> None:
        self._sets.pop(key, None)


# -- the controller ----------------------------------------------------------------------

class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, ctx: ControllerContext, workers: int = 2, burst: int = DEFAULT_BURST):
        super().__init__(ctx, workers)
        self.burst = burst
        self.expectations = NodeExpectations(ctx.clock)
        self.eligibility = EligibilityCache()
        self.sets = ctx.informers.informer(DAEMONSETS, {"namespace": index_by_namespace})
        self.pods = ctx.informers.informer(PODS, {CONTROLLER_INDEX: index_by_controller})
        self.nodes = ctx.informers.informer(NODES)
        self.revisions = ctx.informers.informer(history.CONTROLLER_REVISIONS, {CONTROLLER_INDEX: index_by_controller})
        self.sets.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_changed, self._node_updated, self._node_changed)
        self.revisions.add_handlers(self._revision_changed, lambda old, new: self._revision_changed(new),
                                    self._revision_changed)

    # -- handlers: enqueue only -------------------------------------------------

    def _owner_key(self, obj: dict) -> Optional[str]:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        return f"{obj['metadata'].get('namespace')}/{ref['name']}"

    def _enqueue_matching(self, pod: dict) -> None:
        labels = pod["metadata"].get("labels") or {}
        for ds in self.sets.store.by_index("namespace", pod["metadata"].get("namespace") or ""):
            if spec_selector_selects(ds, labels):
                self.enqueue(ds)

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is None:
            self._enqueue_matching(pod)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.deleted(key, target_node(pod), object_key(pod))
        else:
            self.expectations.created(key, target_node(pod))
        self.queue.add(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        key = self._owner_key(new)
        if new["metadata"].get("deletionTimestamp") and key is not None:
            self.expectations.deleted(key, target_node(new), object_key(new))
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            self.queue.add(key)
        elif old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deleted(key, target_node(pod), object_key(pod))
            self.queue.add(key)

    def _node_changed(self, node: dict) -> None:
        for ds in self.sets.store.list():
            self.enqueue(ds)

    def _node_updated(self, old: dict, new: dict) -> None:
        """Only what eligibility reads: labels, taints, unschedulable."""
        if (old["metadata"].get("labels") != new["metadata"].get("labels")
                or (old.get("spec") or {}) != (new.get("spec") or {})):
            self._node_changed(new)

    def _revision_changed(self, revision: dict) -> None:
        key = self._owner_key(revision)
        if key is not None:
            self.queue.add(key)

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.sets.store.get(key)
        if ds is None:
            self.expectations.forget(key)
            self.eligibility.forget(key)
            return
        try:
            selector = label_selector_from_dict(ds["spec"].get("selector"))
        except SelectorError as err:
            raise PermanentError(f"invalid selector: {err}") from None
        pods = await claim(self.client, PODS, ds, claim_candidates(self.pods.store, ds),
                           lambda p: selector.matches(p["metadata"].get("labels")))
        revisions = await history.claim_revisions(self.client, ds, claim_candidates(self.revisions.store, ds))
        current, revisions = await history.sync_revisions(self.client, DAEMONSETS, ds, revisions)
        digest = history.label_hash(current)
        runs = self.eligibility.runs(key, ds, self.nodes.store.list())
        by_node = self._by_node(pods)
        steps = [self.write_status(ds, runs, by_node, digest)]
        if not ds["metadata"].get("deletionTimestamp"):
            plan = self.plan(ds, runs, by_node, digest, self.expectations.pending(key))
            if plan.create or plan.delete:
                self.expect(key, plan)       # before anything yields: the handlers see what is expected
                steps.append(self.sync_nodes(key, ds, plan, digest))
        # the status (of what the cache shows now) is written while the pods' writes go
        failures = [r for r in await asyncio.gather(*steps, return_exceptions=True) if isinstance(r, Exception)]
        if failures:
            raise failures[-1]
        in_use = {history.pod_revision(p) for p in pods} | {digest}
        await history.truncate_history(self.client, ds, revisions,
                                       {r["metadata"]["name"] for r in revisions if history.label_hash(r) in in_use})

    @staticmethod
    def _by_node(pods: list[dict]) -> dict[str, list[dict]]:
        """Pods per target node (terminated pods that are being deleted left out)."""
        by_node: dict[str, list[dict]] = {}
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") in (
                    "Succeeded", "Failed"):
                continue
            node = target_node(pod)
            if node:
                by_node.setdefault(node, []).append(pod)
        return by_node

    def plan(self, ds: dict, runs: dict, by_node: dict, digest: str, pending: frozenset) -> Plan:
        """One pass's writes: the per-node plan, then the rolling update's, on the nodes that are
        not ``pending``."""
        rolling = self._strategy(ds) == "RollingUpdate"
        eligible = [name for name, (should_run, _) in runs.items() if should_run]
        plan = manage_plan(runs, by_node, digest, rolling and rolling_params(ds, len(eligible))[0] > 0, pending)
        plan.create = plan.create[:self.burst]
        if rolling:
            self.rolling_update(ds, eligible, by_node, digest, plan, pending)
        return plan

    def expect(self, key: str, plan: Plan) -> None:
        for node in plan.create:
            self.expectations.expect(key, node, creates=1)
        for pod_key, pod in plan.delete.items():
            self.expectations.expect(key, target_node(pod), deletes=[pod_key])

    @staticmethod
    def _strategy(ds: dict) -> str:
        return (ds["spec"].get("updateStrategy") or {}).get("type") or "RollingUpdate"

    def rolling_update(self, ds: dict, eligible: list[str], by_node: dict, digest: str, plan: Plan,
                       pending: frozenset) -> None:
        """Add to ``plan`` the old pods to replace (and, surging, the nodes to get a new pod
        next to their old one) — Kubernetes' rollingUpdate over the ``eligible`` nodes."""
        surge, unavailable = rolling_params(ds, len(eligible))
        now, min_ready = self.clock.wall(), int(ds["spec"].get("minReadySeconds") or 0)

        def available(pod):
            return available_in(pod, min_ready, now) == 0.0
        if surge == 0:
            plan.drop(pods_to_replace(eligible, by_node, digest, unavailable, available, pending))
        else:
            create, delete = surge_moves(eligible, by_node, digest, surge, available, pending)
            plan.deletes_first = bool(delete)
            plan.create += [n for n in create if n not in plan.create]
            plan.drop(delete)

    async def sync_nodes(self, key: str, ds: dict, plan: Plan, digest: str) -> None:
        """Carry out ``plan`` (its writes already expected): deletes all at once while creates
        go in slow-start batches (the first ``FIRST_BATCH``; they are on other nodes, so
        neither waits for the other unless ``plan.deletes_first``). A write that fails, or is
        never issued after a failed batch, is no longer expected; the first error is raised."""
        victims = list(plan.delete.items())
        deleting = asyncio.gather(*(self._delete(key, pod_key, pod, pod_key in plan.force)
                                    for pod_key, pod in victims), return_exceptions=True)
        if plan.deletes_first:
            await asyncio.wait([deleting])
        nodes = iter(plan.create)

        async def create_next() -> dict:
            node = next(nodes)
            try:
                return await self.client.create(PODS, new_pod(ds, node, digest), ds["metadata"]["namespace"])
            except Exception:
                self.expectations.created(key, node)
                raise
        (created, error), results = await asyncio.gather(
            slow_start(len(plan.create), create_next, initial=FIRST_BATCH), deleting)
        for node in nodes:
            self.expectations.created(key, node)
        if created:
            self.ctx.recorder.emit(ds, "Normal", "SuccessfulCreate", f"Created {created} daemon pod(s)")
        errors = [r for r in results if isinstance(r, Exception)]
        if errors or error is not None:
            raise error or errors[0]

    async def _delete(self, key: str, pod_key: str, pod: dict, force: bool) -> None:
        """Delete ``pod`` (at once when ``force``); gone already counts as done, a failure is
        no longer expected and raised."""
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"],
                                     grace_period_seconds=0 if force else None)
        except NotFound:
            self.expectations.deleted(key, target_node(pod), pod_key)
        except Exception:
            self.expectations.deleted(key, target_node(pod), pod_key)
            raise

    async def write_status(self, ds: dict, runs: dict, by_node: dict, digest: str) -> None:
        status, wait = daemon_set_status(ds, runs, by_node, digest, self.clock.wall())
        if wait is not None:
            self.queue.add_after(object_key(ds), wait + 0.1)
        old = ds.get("status") or {}
        if any(old.get(k, 0) != v for k, v in status.items()):
            await self.client.patch(DAEMONSETS, ds["metadata"]["name"], {"status": status},
                                    ds["metadata"]["namespace"], subresource="status")


def pods_to_replace(eligible: list[str], by_node: dict[str, list[dict]], digest: str, max_unavailable: int,
                    available, pending: frozenset = frozenset()) -> list[dict]:
    """RollingUpdate without surge: old pods of ``eligible`` nodes to delete so that at most
    ``max_unavailable`` nodes are without an available pod; unavailable old pods always go.
    ``pending`` nodes (a pod being created or deleted, not yet in the cache) count as unavailable."""
    unavailable, broken, candidates = 0, [], []
    for node_name in sorted(eligible):
        if node_name in pending:
            unavailable += 1
            continue
        new, old, ok = split_by_revision(by_node.get(node_name, []), digest)
        if not ok or (new is None) == (old is None):
            unavailable += 1                     # being created, deleted or cleaned up
        elif new is not None:
            unavailable += 0 if available(new) else 1
        elif not available(old):
            broken.append(old)
        else:
            candidates.append(old)
    room = max(0, min(max_unavailable - unavailable, len(candidates)))
    return broken + candidates[:room]


def surge_moves(eligible: list[str], by_node: dict[str, list[dict]], digest: str, max_surge: int,
                available, pending: frozenset = frozenset()) -> tuple[list[str], list[dict]]:
    """RollingUpdate with surge: (nodes to get a new pod next to their old one, old pods whose
    new pod is available). At most ``max_surge`` new pods are unavailable at a time;
    ``pending`` nodes (writes not yet in the cache) count as surging."""
    surging, allowed, candidates, done = 0, [], [], []
    for node_name in eligible:
        new, old, ok = split_by_revision(by_node.get(node_name, []), digest)
        if node_name in pending or not ok:
            surging += 1
        elif old is None:
            continue
        elif new is None:
            (allowed if not available(old) else candidates).append(node_name)
        elif not available(new):
            surging += 1
        else:
            done.append(old)
    room = max(0, min(max_surge - surging, len(candidates)))
    return allowed + candidates[:room], done


def daemon_set_status(ds: dict, runs: dict[str, tuple[bool, bool]], by_node: dict, digest: str,
                      now) -> tuple[dict, Optional[float]]:
    """The status (``runs`` from ``eligibility``), and the seconds until a ready pod becomes
    available (None if none waits)."""
    min_ready = int(ds["spec"].get("minReadySeconds") or 0)
    counts = dict.fromkeys(("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                            "numberAvailable", "updatedNumberScheduled", "numberMisscheduled"), 0)
    waits = []
    for node_name, (should_run, _) in runs.items():
        pods = by_age(by_node.get(node_name, []))
        if not should_run:
            counts["numberMisscheduled"] += 1 if pods else 0
            continue
        counts["desiredNumberScheduled"] += 1
        if not pods:
            continue
        counts["currentNumberScheduled"] += 1
        wait = available_in(pods[0], min_ready, now) if is_ready(pods[0]) else None
        counts["numberReady"] += wait is not None
        counts["numberAvailable"] += wait == 0.0
        waits += [wait] if wait else []
        counts["updatedNumberScheduled"] += history.pod_revision(pods[0]) == digest
    counts["numberUnavailable"] = counts["desiredNumberScheduled"] - counts["numberAvailable"]
    counts["observedGeneration"] = ds["metadata"].get("generation", 1)
    collisions = (ds.get("status") or {}).get("collisionCount")
    if collisions:
        counts["collisionCount"] = collisions
    return counts, (min(waits) if waits else None)


def new_controller(ctx: ControllerContext) -> DaemonSetController:
    return DaemonSetController(ctx, burst=int(ctx.options.get("daemonset_burst", DEFAULT_BURST)))
