"""Node lifecycle controller: Lease health, Ready=Unknown, NoExecute taints, evictions.

Every ``monitor_period`` seconds each Node is visited. A node is alive while
its Lease (``kube-node-lease/<node>``) or its Ready heartbeat changed within
``grace_period`` seconds, measured on this controller's clock from when it
*saw* the change (so clock skew between machines does not matter; a node
first seen counts as seen then). Per node, ``reconcile``:

1. conditions (via ``nodes/status``): a node not alive for the grace period
   gets every condition set to Unknown (reason NodeStatusUnknown, or
   NodeStatusNeverUpdated when it never posted one); once its Lease is
   renewed again the conditions this controller set are restored (Ready=True);
2. taints: Ready=Unknown → ``node.kubernetes.io/unreachable:NoExecute``,
   Ready=False → ``node.kubernetes.io/not-ready:NoExecute``, Ready=True →
   neither (``timeAdded`` is stamped when a taint is added);
3. pods on a node that is not Ready are marked Ready=False (so Services stop
   sending them traffic);
4. evictions: a pod on a node with NoExecute taints is deleted once its
   toleration for them expires: at once when a taint is not tolerated, never
   when tolerated without ``tolerationSeconds``, else ``tolerationSeconds``
   after the taint's ``timeAdded`` (the apiserver's default tolerations give
   300 s; ``eviction_cap`` caps every tolerationSeconds, for tests). Their
   controllers then replace them elsewhere.

Options (``ctx.options``): ``node_monitor_grace_period`` (50 s),
``node_monitor_period`` (5 s), ``pod_eviction_timeout`` (the cap; None).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from typing import Optional

from pkube.api.tolerations import tolerates
from pkube.client.errors import NotFound
from pkube.client.resources import LEASES, NODES, PODS
from pkube.client.store import index_pods_by_node
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.podcontrol import TERMINAL_PHASES, parse_time

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
NO_EXECUTE = "NoExecute"
STATUS_TAINTS = (UNREACHABLE, NOT_READY)
UNKNOWN_REASONS = ("NodeStatusUnknown", "NodeStatusNeverUpdated")
DEFAULT_GRACE = 50.0
DEFAULT_MONITOR_PERIOD = 5.0
HEALTHY_STATUS = {"Ready": "True"}          # every other kubelet condition is healthy when False


# --------------------------------------------------------------------------- pure helpers

def ready_status(node: dict) -> Optional[str]:
    """The Ready condition's status ("True", "False", "Unknown"), or None when there is none."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status")
    return None


def status_taint_key(ready: Optional[str]) -> Optional[str]:
    """The NoExecute taint a node's Ready status calls for (None: no taint)."""
    if ready == "False":
        return NOT_READY
    if ready == "Unknown":
        return UNREACHABLE
    return None


def taints_for(node: dict, ready: Optional[str], wall: dt.datetime) -> Optional[list[dict]]:
    """The node's taints with the right status taint; None when they are already right."""
    taints = (node.get("spec") or {}).get("taints") or []
    wanted = status_taint_key(ready)
    present = {t.get("key") for t in taints if t.get("effect") == NO_EXECUTE and t.get("key") in STATUS_TAINTS}
    if present == ({wanted} if wanted else set()):
        return None
    kept = [t for t in taints if not (t.get("effect") == NO_EXECUTE and t.get("key") in STATUS_TAINTS)]
    if wanted:
        kept.append({"key": wanted, "effect": NO_EXECUTE, "timeAdded": rfc3339(wall)})
    return kept


def unknown_conditions(node: dict, wall: dt.datetime) -> list[dict]:
    """Every condition set to Unknown, as when the kubelet stopped posting (Ready added if
    absent). Heartbeat times are kept: they say when the kubelet last posted."""
    now = rfc3339(wall)
    conditions = copy.deepcopy((node.get("status") or {}).get("conditions") or [])
    if not any(c.get("type") == "Ready" for c in conditions):
        conditions.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                           "message": "Kubelet never posted node status.", "lastTransitionTime": now})
    for condition in conditions:
        if condition.get("status") != "Unknown":
            condition.update(status="Unknown", reason="NodeStatusUnknown",
                             message="Kubelet stopped posting node status.", lastTransitionTime=now)
    return conditions


def restored_conditions(node: dict, wall: dt.datetime) -> list[dict]:
    """The conditions this controller set to Unknown, back to healthy (Ready=True, others False)."""
    now = rfc3339(wall)
    conditions = copy.deepcopy((node.get("status") or {}).get("conditions") or [])
    for condition in conditions:
        if condition.get("status") == "Unknown" and condition.get("reason") in UNKNOWN_REASONS:
            condition.update(status=HEALTHY_STATUS.get(condition.get("type"), "False"),
                             reason="NodeLeaseRenewed", message="The node's Lease is renewed again.",
                             lastTransitionTime=now, lastHeartbeatTime=now)
    return conditions


def eviction_delay(pod: dict, taints: list[dict], wall: dt.datetime,
                   cap: Optional[float] = None) -> Optional[float]:
    """Seconds from ``wall`` until ``pod`` must be evicted for the node's NoExecute ``taints``
    (<= 0: now); None when it tolerates them all forever (or there are none)."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadlines = []
    for taint in (t for t in taints if t.get("effect") == NO_EXECUTE):
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        seconds = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
        if len(seconds) < len(matching):
            continue                                       # one tolerates it forever
        allowed = max(0.0, float(min(seconds)))
        if cap is not None:
            allowed = min(allowed, cap)
        added = parse_time(taint.get("timeAdded")) or wall
        deadlines.append((added - wall).total_seconds() + allowed)
    return min(deadlines) if deadlines else None


def liveness_signature(node: dict, lease: Optional[dict]) -> tuple:
    """What changes when a kubelet is alive: its Lease's renewTime and its Ready heartbeat."""
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    beat = next((c.get("lastHeartbeatTime") for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"), None)
    return renew, beat


class NodeHealth:
    """When each node's liveness signature last changed, on the controller's monotonic clock."""

    def __init__(self):
        self._seen: dict[str, tuple[tuple, float]] = {}
        self._renewed: set[str] = set()

    def observe(self, name: str, signature: tuple, now: float) -> float:
        """Record ``signature``; seconds since it last changed (0 on first sight or a change)."""
        previous = self._seen.get(name)
        if previous is None or previous[0] != signature:
            if previous is not None:
                self._renewed.add(name)
            self._seen[name] = (signature, now)
            return 0.0
        return now - previous[1]

    def seen_renewal(self, name: str) -> bool:
        """True once the signature changed after the first sight: the node has shown life
        (a controller restarted while a node is silent must not call that node alive)."""
        return name in self._renewed

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._renewed.discard(name)


def is_evictable(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# --------------------------------------------------------------------------- the controller

class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext, grace_period: float = DEFAULT_GRACE,
                 monitor_period: float = DEFAULT_MONITOR_PERIOD, eviction_cap: Optional[float] = None,
                 workers: int = 4):
        super().__init__(ctx, workers)
        if grace_period <= 0 or monitor_period <= 0:
            raise ValueError("grace_period and monitor_period must be > 0")
        self.grace_period, self.monitor_period, self.eviction_cap = grace_period, monitor_period, eviction_cap
        self.health = NodeHealth()
        self.nodes = ctx.informers.informer(NODES)
        self.leases = ctx.informers.informer(LEASES)
        self.pods = ctx.informers.informer(PODS, {"node": index_pods_by_node})
        self.nodes.add_handlers(self.enqueue, self._node_updated, self.enqueue)
        self.pods.add_handlers(self._pod_changed, lambda old, new: self._pod_changed(new))

    def _node_updated(self, old: dict, new: dict) -> None:
        if ready_status(old) != ready_status(new) or \
                (old.get("spec") or {}).get("taints") != (new.get("spec") or {}).get("taints"):
            self.enqueue(new)

    def _pod_changed(self, pod: dict) -> None:
        """A pod landing on a NoExecute-tainted node may have to go: visit the node."""
        node = self.nodes.store.get((pod.get("spec") or {}).get("nodeName") or "")
        taints = ((node or {}).get("spec") or {}).get("taints") or []
        if any(t.get("effect") == NO_EXECUTE for t in taints):
            self.enqueue(node)

    async def run(self) -> None:
        monitor = asyncio.ensure_future(self._monitor())
        try:
            await super().run()
        finally:
            monitor.cancel()

    async def _monitor(self) -> None:
        """Visit every node each monitor period (the Lease informer's events enqueue nothing)."""
        await self.ctx.informers.wait_synced()
        while True:
            for name in self.nodes.store.keys():
                self.queue.add(name)
            await self.clock.sleep(self.monitor_period)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            self.health.forget(key)
            return
        lease = self.leases.store.get(f"{LEASE_NAMESPACE}/{key}")
        silent_for = self.health.observe(key, liveness_signature(node, lease), self.clock.now())
        node = await self._update_conditions(node, silent_for)
        node = await self._update_taints(node)
        if ready_status(node) in ("False", "Unknown"):
            await self._mark_pods_not_ready(key)
        await self._evict(node)

    async def _update_conditions(self, node: dict, silent_for: float) -> dict:
        ready = ready_status(node)
        wall = self.clock.wall()
        if silent_for >= self.grace_period and ready != "Unknown":
            log.info("node %s: silent for %.0fs, marking it Unknown", node["metadata"]["name"], silent_for)
            return await self._write_conditions(node, unknown_conditions(node, wall))
        if silent_for < self.grace_period and ready == "Unknown" and self._set_by_us(node) \
                and self.health.seen_renewal(node["metadata"]["name"]):
            log.info("node %s: Lease renewed again, restoring its conditions", node["metadata"]["name"])
            return await self._write_conditions(node, restored_conditions(node, wall))
        return node

    def _set_by_us(self, node: dict) -> bool:
        return any(c.get("type") == "Ready" and c.get("reason") in UNKNOWN_REASONS
                   for c in (node.get("status") or {}).get("conditions") or [])

    async def _write_conditions(self, node: dict, conditions: list[dict]) -> dict:
        updated = copy.deepcopy(node)
        updated.setdefault("status", {})["conditions"] = conditions
        return await self.client.replace(NODES, updated, subresource="status")

    async def _update_taints(self, node: dict) -> dict:
        taints = taints_for(node, ready_status(node), self.clock.wall())
        if taints is None:
            return node
        updated = copy.deepcopy(node)
        updated.setdefault("spec", {})["taints"] = taints
        log.info("node %s: taints now %s", node["metadata"]["name"], [t.get("key") for t in taints])
        return await self.client.replace(NODES, updated)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        wall = rfc3339(self.clock.wall())
        for pod in self.pods.store.by_index("node", node_name):
            if pod_ready(pod) and is_evictable(pod):
                await self._patch_not_ready(pod, wall)

    async def _patch_not_ready(self, pod: dict, now: str) -> None:
        conditions = [dict(c, status="False", lastTransitionTime=now) if c.get("type") == "Ready" else c
                      for c in pod["status"].get("conditions") or []]
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], {"status": {"conditions": conditions}},
                                    meta.get("namespace"), subresource="status")
        except NotFound:
            pass

    async def _evict(self, node: dict) -> None:
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == NO_EXECUTE]
        if not taints:
            return
        name, wall = node["metadata"]["name"], self.clock.wall()
        waits = []
        for pod in self.pods.store.by_index("node", name):
            delay = eviction_delay(pod, taints, wall, self.eviction_cap) if is_evictable(pod) else None
            if delay is not None and delay <= 0:
                await self._delete_pod(pod, name)
            elif delay is not None:
                waits.append(delay)
        if waits:
            self.queue.add_after(name, min(waits))

    async def _delete_pod(self, pod: dict, node_name: str) -> None:
        meta = pod["metadata"]
        log.info("evicting pod %s/%s from node %s", meta.get("namespace"), meta["name"], node_name)
        self.ctx.recorder.emit(pod, "Normal", "TaintManagerEviction",
                               f"Marking for deletion Pod {meta.get('namespace')}/{meta['name']}")
        try:
            await self.client.delete(PODS, meta["name"], meta.get("namespace"),
                                     preconditions={"uid": meta.get("uid")})
        except NotFound:
            pass


def new_controller(ctx: ControllerContext) -> NodeLifecycleController:
    cap = ctx.options.get("pod_eviction_timeout")
    return NodeLifecycleController(
        ctx, grace_period=float(ctx.options.get("node_monitor_grace_period", DEFAULT_GRACE)),
        monitor_period=float(ctx.options.get("node_monitor_period", DEFAULT_MONITOR_PERIOD)),
        eviction_cap=None if cap is None else float(cap))
