"""Runs the filter and score plugins for one pod over the nodes, and picks one.

Per pod: walk the nodes from a rotating start, keep those every filter
accepts (the first failing filter's reasons are counted for the message),
stop early once ``feasible_nodes_to_find`` are found (kube-scheduler's
percentageOfNodesToScore: 50% minus 1% per 125 nodes, at least 5%, at least
100 nodes); then score the feasible ones (each plugin's raw scores
normalized to 0..100, times its weight), and pick the best, ties broken at
random.

Two ways to the same answer: the direct walk calls the plugins on the
nodes walked; for pods that look alike (see ``scheduler.equivalence``) the
verdicts and raw scores come from a table kept up to date across decisions,
when the caller says which nodes changed since its previous call.
"""

from __future__ import annotations

import itertools
import operator
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from pkube.scheduler.equivalence import EquivalenceCache, signature
from pkube.scheduler.plugins import (balanced_allocation, batch_filter, batch_score, host_ports,
                               least_allocated, node_name, node_ready_schedulable, node_resources_fit,
                               node_selector_affinity, selector_spread, taint_toleration)
from pkube.scheduler.types import NodeInfo, PodInfo

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
        self._filter_skips = [(p, getattr(p, "skip_filter", None)) for p in self.filters]
        self._score_skips = [(p, w, getattr(p, "skip_score", None)) for p, w in self.scorers]
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self.equivalence = EquivalenceCache()
        self._next_start = 0

    def schedule(self, pod: PodInfo, nodes: Sequence[NodeInfo],
                 changed: Optional[Iterable[str]] = None) -> ScheduleResult:
        """Pick a node for ``pod`` among ``nodes`` (it changes nothing).

        ``changed``: the names of the nodes whose NodeInfo changed since the previous
        call with this same list object (``SchedulerCache.drain_changed``); None if
        unknown, which only forgoes the equivalence tables.
        """
        use_tables = self.equivalence.sync(nodes, changed)
        if not nodes:
            return ScheduleResult(None, message="0/0 nodes are available: no nodes available to schedule pods.")
        filters = [p for p, skip in self._filter_skips if skip is None or not skip(pod)]
        scorers = [(p, w) for p, w, skip in self._score_skips if skip is None or not skip(pod)]
        wanted = feasible_nodes_to_find(len(nodes), self.percentage)
        start = self._next_start % len(nodes)
        result = ScheduleResult(None)
        scorer_plugins = [p for p, _ in scorers]
        named = node_selector_affinity.node_names(pod)
        key = signature(filters, scorer_plugins, pod) if use_tables and named is None else None
        table = self.equivalence.table(key, filters, scorer_plugins, pod, wanted) if key else None
        if named is not None:           # only the nodes the pod's affinity names (a DaemonSet pod's)
            candidates = [n for n in nodes if n.name in named]
            result.reasons[node_selector_affinity.REASON] += len(nodes) - len(candidates)
            feasible, walked = _walk(filters, pod, candidates, 0, len(candidates), result.reasons)
            result.evaluated, start = len(nodes) - len(candidates) + walked, self._next_start
        elif table is None:
            feasible, result.evaluated = _walk(filters, pod, nodes, start, wanted, result.reasons)
        else:
            runs, result.evaluated = table.walk(start, wanted, result.reasons)
            feasible = list(itertools.chain.from_iterable(nodes[b:e] for b, e in runs))
        if named is None:
            self._next_start = (start + result.evaluated) % len(nodes)
        result.feasible = len(feasible)
        if not feasible:
            result.message = failure_message(len(nodes), result.reasons)
        elif len(feasible) == 1:
            result.node = feasible[0].name
        else:
            raw = table.scores_in(runs) if table else [batch_score(p)(pod, feasible) for p in scorer_plugins]
            result.node = self._best(feasible, scorers, raw)
        return result

    def _best(self, feasible: list, scorers: list, raw: list) -> str:
        """The feasible node with the highest weighted sum of normalized scores; ties at random.

        ``raw``: each (plugin, weight) of ``scorers``'s raw scores over ``feasible``.
        """
        totals = [0] * len(feasible)
        for (plugin, weight), scores in zip(scorers, raw):
            if scores.count(scores[0]) == len(scores):
                continue            # the same on every node (normalized too): it cannot change the pick
            normalize = getattr(plugin, "normalize", None)
            if normalize is not None:
                scores = normalize(scores)
            if weight != 1:
                scores = [weight * s for s in scores]
            totals = list(map(operator.add, totals, scores))
        best = max(totals)
        if totals.count(best) == 1:
            return feasible[totals.index(best)].name
        return self.rng.choice(list(itertools.compress(feasible, map(best.__eq__, totals)))).name


def _walk(filters: Sequence, pod: PodInfo, nodes: Sequence[NodeInfo], start: int, wanted: int,
          reasons: Counter) -> tuple[list, int]:
    """The direct walk: filter nodes in chunks from ``start`` (wrapping) until ``wanted`` are
    feasible; the feasible nodes in walk order and the number walked.

    Within a chunk each filter runs over the nodes the previous ones kept,
    so a node's reasons (added to ``reasons``) are those of its first failing filter.
    """
    checks = [batch_filter(p) for p in filters]
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
                    reasons.update(status.reasons)
            chunk = [node for node, status in zip(chunk, statuses) if not status.code]
        feasible.extend(chunk)
    return feasible, evaluated
