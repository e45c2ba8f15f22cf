"""The scheduler's view of nodes and the pods counted on them.

Pods come from two sources: the informer (pods bound to a node) and the
scheduler itself (``assume``: a pod it has just chosen a node for, counted
at once so that a burst never overcommits a node while bindings are in
flight). An assumed pod is confirmed when the informer reports it bound
(``add_pod``), dropped by ``forget`` when its binding fails, and expired
``assumed_ttl`` seconds after ``finish_binding`` if the informer never
confirms it. The names of nodes whose counts or Node changed are collected
for the framework's equivalence tables (``drain_changed``). Called only from
the event loop's thread.
"""

from __future__ import annotations

from typing import Optional

from pkube.client.clock import Clock
from pkube.scheduler.types import TERMINAL_PHASES, NodeInfo, PodInfo, pod_key, same_footprint


class SchedulerCache:
    """See the module docstring."""

    def __init__(self, clock: Optional[Clock] = None, assumed_ttl: float = 30.0):
        self.clock = clock or Clock()
        self.assumed_ttl = assumed_ttl
        self._nodes: dict[str, NodeInfo] = {}
        self._pod_nodes: dict[str, str] = {}             # pod key -> node name it is counted on
        self._assumed: dict[str, Optional[float]] = {}   # pod key -> expiry (None: binding in flight)
        self._node_list: Optional[list] = None
        self._changed: set[str] = set()                  # node names changed since drain_changed

    # nodes
    def add_node(self, node: dict) -> None:
        """Add or update a Node; pods already counted on it stay."""
        name = node["metadata"]["name"]
        info = self._nodes.get(name)
        if info is None or info.node is None:
            self._node_list = None                       # a new candidate
        if info is None:
            self._nodes[name] = NodeInfo.from_node(node)
        else:
            info.set_node(node)
        self._changed.add(name)

    def remove_node(self, name: str) -> None:
        """Forget a deleted Node; its pods are kept on a placeholder until they go."""
        info = self._nodes.get(name)
        if info is None:
            return
        if info.pods:
            info.node = None
        else:
            del self._nodes[name]
        self._node_list = None

    def node_list(self) -> list[NodeInfo]:
        """The schedulable candidates: every known Node (placeholders excluded), stable order.

        The same list object until a node is added or removed (updates change its
        NodeInfo in place): the framework keys its equivalence tables on it.
        """
        if self._node_list is None:
            self._node_list = [n for n in self._nodes.values() if n.node is not None]
        return self._node_list

    def node(self, name: str) -> Optional[NodeInfo]:
        return self._nodes.get(name)

    def drain_changed(self) -> set[str]:
        """The names of the nodes changed (Node or pods counted) since the previous call.

        One consumer only: the framework, which is told them before each decision.
        """
        changed, self._changed = self._changed, set()
        return changed

    # pods
    def add_pod(self, pod: dict) -> None:
        """The informer saw ``pod`` (added or updated); count it where it is bound.

        Unbound and finished pods are not counted; a confirmed assumed pod
        stops being assumed. A pod already counted on that node with the same
        footprint (its confirmation, a status update) is left as counted.
        """
        key = pod_key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        finished = (pod.get("status") or {}).get("phase") in TERMINAL_PHASES
        if not node_name or finished:
            if key not in self._assumed:
                self.remove_pod(key)
            return
        self._assumed.pop(key, None)
        counted = self._nodes[node_name].pods.get(key) if self._pod_nodes.get(key) == node_name else None
        if counted is None or not same_footprint(counted.pod, pod):
            self._place(PodInfo.from_pod(pod), node_name)

    def remove_pod(self, key: str) -> None:
        """The pod is gone (deleted, finished, or its assumption failed)."""
        self._assumed.pop(key, None)
        node_name = self._pod_nodes.pop(key, None)
        info = self._nodes.get(node_name) if node_name else None
        if info is None:
            return
        info.remove_pod(key)
        self._changed.add(node_name)
        if info.node is None and not info.pods:
            del self._nodes[node_name]

    def assume(self, pod: PodInfo, node_name: str) -> None:
        """Count ``pod`` on ``node_name`` now, before its binding is confirmed."""
        self._place(pod, node_name)
        self._assumed[pod.key] = None

    def finish_binding(self, key: str) -> None:
        """The binding call returned; start the confirmation deadline."""
        if key in self._assumed:
            self._assumed[key] = self.clock.now() + self.assumed_ttl

    def forget(self, key: str) -> None:
        """The binding failed: un-count the assumed pod."""
        if key in self._assumed:
            self.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def cleanup_expired(self) -> list[str]:
        """Drop assumed pods never confirmed in time; their keys."""
        now = self.clock.now()
        expired = [k for k, deadline in self._assumed.items() if deadline is not None and deadline <= now]
        for key in expired:
            self.remove_pod(key)
        return expired

    def _place(self, pod: PodInfo, node_name: str) -> None:
        previous = self._pod_nodes.get(pod.key)
        if previous and previous != node_name:
            self.remove_pod(pod.key)
        info = self._nodes.get(node_name)
        if info is None:
            info = self._nodes[node_name] = NodeInfo(name=node_name)
        info.add_pod(pod)
        self._pod_nodes[pod.key] = node_name
        self._changed.add(node_name)
