"""Runs the filter and score plugins for one pod over the nodes, and picks one.

Per pod: walk the nodes from a rotating start, keep those every filter
accepts (the first failing filter's reasons are counted for the message),
stop early once ``feasible_nodes_to_find`` are found (kube-scheduler's
percentageOfNodesToScore: 50% minus 1% per 125 nodes, at least 5%, at least
100 nodes); then score the feasible ones (each plugin's raw scores
normalized to 0..100, times its weight), and pick the best, ties broken at
random.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

from scheduler.plugins import (balanced_allocation, host_ports, least_allocated, node_name,
                               node_ready_schedulable, node_resources_fit, node_selector_affinity,
                               selector_spread, taint_toleration)
from scheduler.types import NodeInfo, PodInfo

DEFAULT_FILTERS = (node_name, node_ready_schedulable, taint_toleration, node_selector_affinity,
                   node_resources_fit, host_ports)
DEFAULT_SCORERS = ((least_allocated, 1), (balanced_allocation, 1), (taint_toleration, 3),
                   (node_selector_affinity, 2), (selector_spread, 2))
MIN_FEASIBLE_NODES = 100
MIN_PERCENTAGE = 5
CHUNK = 64          # nodes filtered per batch


@dataclass
class ScheduleResult:
    """The chosen node, or None with the failure histogram and Kubernetes' message."""

    node: Optional[str]
    evaluated: int = 0
    feasible: int = 0
    reasons: Counter = field(default_factory=Counter)
    message: str = ""


def feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough (0 percentage = adaptive, as kube-scheduler)."""
    if num_nodes < MIN_FEASIBLE_NODES:
        return num_nodes
    if percentage <= 0:
        percentage = max(MIN_PERCENTAGE, 50 - num_nodes // 125)
    if percentage >= 100:
        return num_nodes
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES)


def failure_message(num_nodes: int, reasons: Counter) -> str:
    """'0/3 nodes are available: 2 Insufficient cpu, 1 node(s) didn't match ...'.

    Most frequent reason first, then alphabetical. (kube-scheduler sorts the
    "N reason" strings as text, which agrees whenever counts tie; counts first
    is the order our issue specifies and reads better.)
    """
    parts = [f"{count} {reason}" for reason, count in sorted(reasons.items(), key=lambda rc: (-rc[1], rc[0]))]
    text = f"0/{num_nodes} nodes are available"
    return f"{text}: {', '.join(parts)}." if parts else f"{text}."


class Framework:
    """The plugin pipeline; one per scheduler. ``rng`` breaks ties (inject for tests)."""

    def __init__(self, filters: Sequence = DEFAULT_FILTERS, scorers: Sequence = DEFAULT_SCORERS,
                 percentage_of_nodes_to_score: int = 0, rng: Optional[random.Random] = None):
        self.filters = list(filters)
        self.scorers = [(p, weight) for p, weight in scorers if weight]
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self._next_start = 0

    def schedule(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> ScheduleResult:
        """Pick a node for ``pod`` among ``nodes`` (it changes nothing)."""
        if not nodes:
            return ScheduleResult(None, message="0/0 nodes are available: no nodes available to schedule pods.")
        result = ScheduleResult(None)
        feasible = self._find_feasible(pod, nodes, result)
        result.feasible = len(feasible)
        if not feasible:
            result.message = failure_message(len(nodes), result.reasons)
            return result
        result.node = feasible[0].name if len(feasible) == 1 else self._best(pod, feasible)
        return result

    def _find_feasible(self, pod: PodInfo, nodes: Sequence[NodeInfo], result: ScheduleResult) -> list:
        """Filter nodes in chunks from the rotating start until enough are feasible.

        Within a chunk each filter runs over the nodes the previous ones kept,
        so a node's reasons are those of its first failing filter.
        """
        checks = [_batch_filter(p) for p in self.filters if not _skips(p, "skip_filter", pod)]
        wanted = feasible_nodes_to_find(len(nodes), self.percentage)
        start = self._next_start % len(nodes)
        rotated = itertools.chain(itertools.islice(nodes, start, None), itertools.islice(nodes, start))
        feasible, evaluated = [], 0
        while len(feasible) < wanted:
            chunk = list(itertools.islice(rotated, min(CHUNK, wanted - len(feasible))))
            if not chunk:
                break
            evaluated += len(chunk)
            for check in checks:
                statuses = check(pod, chunk)
                for status in statuses:
                    if status.code:
                        result.reasons.update(status.reasons)
                chunk = [node for node, status in zip(chunk, statuses) if not status.code]
            feasible.extend(chunk)
        result.evaluated = evaluated
        self._next_start = (start + evaluated) % len(nodes)
        return feasible

    def _best(self, pod: PodInfo, feasible: list) -> str:
        totals = [0] * len(feasible)
        for plugin, weight in self.scorers:
            if _skips(plugin, "skip_score", pod):
                continue                  # the same score on every node: it cannot change the pick
            batch = getattr(plugin, "score_nodes", None)
            scores = batch(pod, feasible) if batch else [plugin.score(pod, node) for node in feasible]
            normalize = getattr(plugin, "normalize", None)
            if normalize is not None:
                scores = normalize(scores)
            for i, s in enumerate(scores):
                totals[i] += weight * s
        best = max(totals)
        winners = [node.name for node, total in zip(feasible, totals) if total == best]
        return winners[0] if len(winners) == 1 else self.rng.choice(winners)


def _batch_filter(plugin):
    """The plugin's ``filter_nodes``, or one made from its ``filter``."""
    batch = getattr(plugin, "filter_nodes", None)
    if batch is not None:
        return batch
    check = plugin.filter
    return lambda pod, nodes: [check(pod, node) for node in nodes]


def _skips(plugin, hook: str, pod: PodInfo) -> bool:
    check = getattr(plugin, hook, None)
    return check is not None and check(pod)
