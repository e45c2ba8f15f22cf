"""Per-node verdicts and scores kept across decisions for pods that look alike.

The pods of one workload ask the same of every node: the same requests,
tolerations, selectors and owner. Each plugin states through ``filter_key`` /
``score_key`` what of a pod its answer depends on; the tuple of the active
plugins' keys is the pod's *signature*. For a signature, a ``NodeTable``
holds, for every node of the candidate list, the first failing filter's
Status (or SUCCESS), a feasibility byte, and each scorer's raw score. A
decision then walks the feasibility bytes (C-speed ``bytearray.find``) and
slices the score lists, instead of calling plugins per node; only nodes that
changed since (a pod assumed or bound there, a Node update) are recomputed.
Kubernetes once had the same idea (the equivalence cache, removed when Go
made per-node filtering cheap enough); in Python the per-node call is the cost.

A table is built only once its signature has come back often enough to pay
for it (``len(nodes) // wanted`` decisions, the nodes one table build costs
in sampled decisions), so one-off pods never cost more than twice the direct
walk. Tables and sightings are bounded (least recently used dropped).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Iterable, Optional, Sequence

from pkube.scheduler.plugins import batch_filter, batch_score
from pkube.scheduler.types import SUCCESS, NodeInfo, PodInfo, Status

TABLES = 16             # signatures with a table
SIGHTINGS = 256         # signatures whose sightings are counted


def signature(filters: Sequence, scorers: Sequence, pod: PodInfo) -> Optional[tuple]:
    """The pod's signature under the active ``filters`` and ``scorers`` (modules);
    None if one of them has no key (its answers cannot be shared between pods)."""
    if not all(hasattr(p, "filter_key") for p in filters) or not all(hasattr(p, "score_key") for p in scorers):
        return None
    return (tuple((p, p.filter_key(pod)) for p in filters),
            tuple((p, p.score_key(pod)) for p in scorers))


def first_failure(filters: Sequence, pod: PodInfo, node: NodeInfo) -> Status:
    """The verdict of the first filter that rejects ``node``, or SUCCESS."""
    for plugin in filters:
        status = plugin.filter(pod, node)
        if status.code:
            return status
    return SUCCESS


def first_failures(filters: Sequence, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[Status]:
    """``first_failure`` for every node, with the plugins' batch calls."""
    verdicts = [SUCCESS] * len(nodes)
    remaining = range(len(nodes))
    for plugin in filters:
        statuses = batch_filter(plugin)(pod, [nodes[i] for i in remaining])
        kept = []
        for i, status in zip(remaining, statuses):
            if status.code:
                verdicts[i] = status
            else:
                kept.append(i)
        remaining = kept
    return verdicts


class NodeTable:
    """One signature's verdicts and raw scores over a node list (positions as in the list).

    ``dirty`` holds positions of nodes changed since; ``refresh`` recomputes them.
    """

    def __init__(self, filters: Sequence, scorers: Sequence, pod: PodInfo, nodes: Sequence[NodeInfo]):
        self.filters, self.scorers = list(filters), list(scorers)
        self.verdicts = first_failures(self.filters, pod, nodes)
        self.feasible = bytearray(0 if v.code else 1 for v in self.verdicts)
        self.scores = [batch_score(p)(pod, nodes) for p in self.scorers]
        self.dirty: set[int] = set()

    def refresh(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> None:
        """Recompute the dirty positions for ``pod`` (any pod of this signature)."""
        for i in self.dirty:
            node = nodes[i]
            verdict = self.verdicts[i] = first_failure(self.filters, pod, node)
            self.feasible[i] = 0 if verdict.code else 1
            for scores, plugin in zip(self.scores, self.scorers):
                scores[i] = plugin.score(pod, node)
        self.dirty.clear()

    def walk(self, start: int, wanted: int, reasons) -> tuple[list, int]:
        """From position ``start``, wrapping, until ``wanted`` feasible nodes are found.

        Returns the feasible positions as (begin, end) runs in walk order and the
        number of nodes walked; the reasons of the infeasible ones walked are
        added to the Counter ``reasons``.
        """
        feasible, size = self.feasible, len(self.feasible)
        runs, found, walked = [], 0, 0
        for low, high in ((start, size), (0, start)):
            i = low
            while i < high and found < wanted:
                blocked = feasible.find(0, i, high)
                blocked = high if blocked < 0 else blocked
                take = min(blocked - i, wanted - found)
                if take:
                    runs.append((i, i + take))
                    found, walked, i = found + take, walked + take, i + take
                    continue
                free = feasible.find(1, i, high)
                free = high if free < 0 else free
                for verdict in self.verdicts[i:free]:
                    reasons.update(verdict.reasons)
                walked, i = walked + free - i, free
        return runs, walked

    def scores_in(self, runs: list) -> list[list[int]]:
        """Each scorer's raw scores at the positions of ``runs``, in order."""
        if len(runs) == 1:
            (begin, end), = runs
            return [scores[begin:end] for scores in self.scores]
        return [list(itertools.chain.from_iterable(scores[b:e] for b, e in runs)) for scores in self.scores]


class EquivalenceCache:
    """The framework's tables for one node list; see the module docstring."""

    def __init__(self, tables: int = TABLES, sightings: int = SIGHTINGS):
        self.max_tables, self.max_sightings = tables, sightings
        self._nodes: Optional[Sequence[NodeInfo]] = None
        self._positions: Optional[dict[str, int]] = None
        self._tables: OrderedDict = OrderedDict()
        self._sightings: OrderedDict = OrderedDict()

    def table_count(self) -> int:
        """How many tables are held now (none until a signature was seen often enough)."""
        return len(self._tables)

    def sync(self, nodes: Sequence[NodeInfo], changed: Optional[Iterable[str]]) -> bool:
        """Called before each decision with the candidate list and the names of the nodes
        changed since the previous call (None: unknown). A different list object (nodes
        added or removed) or None drops every table. True when tables may be used."""
        if changed is None or nodes is not self._nodes:
            self._tables.clear()
            self._positions = None
            self._nodes = nodes if changed is not None else None
            return changed is not None
        if self._tables:
            if self._positions is None:
                self._positions = {node.name: i for i, node in enumerate(nodes)}
            for name in changed:
                i = self._positions.get(name)
                if i is not None:
                    for table in self._tables.values():
                        table.dirty.add(i)
        return True

    def table(self, key: tuple, filters: Sequence, scorers: Sequence, pod: PodInfo,
              wanted: int) -> Optional[NodeTable]:
        """The up-to-date table of signature ``key``; None while it is not worth building.
        Call after ``sync`` returned True."""
        nodes = self._nodes
        table = self._tables.get(key)
        if table is None:
            if not self._sighted(key, max(2, len(nodes) // max(wanted, 1))):
                return None
            table = self._tables[key] = NodeTable(filters, scorers, pod, nodes)
            if len(self._tables) > self.max_tables:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
            table.refresh(pod, nodes)
        return table

    def _sighted(self, key: tuple, needed: int) -> bool:
        """Count one more sighting of ``key``; True once it has ``needed``."""
        seen = self._sightings.pop(key, 0) + 1
        if seen >= needed:
            return True
        self._sightings[key] = seen
        if len(self._sightings) > self.max_sightings:
            self._sightings.popitem(last=False)
        return False
