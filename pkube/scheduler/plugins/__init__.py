"""Filter and score plugins, one module each.

A plugin module has a ``NAME`` and any of:
- ``filter(pod: PodInfo, node: NodeInfo) -> Status``: may the pod run there?
- ``score(pod, node) -> int``: 0..100, higher is better; or a raw value when
  the module also has
- ``normalize(scores: list[int]) -> list[int]``: maps the raw scores of all
  feasible nodes to 0..100 (equal raw scores to equal scores: the framework
  skips a scorer whose raw scores are all equal, as it cannot change the pick).
- ``score_nodes(pod, nodes) -> list[int]``: the same as ``[score(pod, n) for n in nodes]``,
  computed in one pass (a hot path: it saves a Python call per node);
- ``filter_nodes(pod, nodes) -> list[Status]``: likewise for ``filter``;
- ``skip_filter(pod) -> bool`` / ``skip_score(pod) -> bool``: True when the
  plugin cannot matter for this pod on any node (kube-scheduler's PreFilter /
  PreScore "Skip"), so the framework does not call it per node;
- ``filter_key(pod)`` / ``score_key(pod)``: a hashable value such that two pods
  with equal keys get the same ``filter`` (``score``) on every node. The
  framework keeps per-node verdicts and scores for pods that look alike
  (``scheduler.equivalence``) only when every plugin active for a pod has its key.
All are pure functions of their arguments.
"""

from __future__ import annotations

from typing import Callable


def batch_filter(plugin) -> Callable:
    """The plugin's ``filter_nodes``, or one made from its ``filter``."""
    return _batched(plugin, "filter_nodes", "filter")


def batch_score(plugin) -> Callable:
    """The plugin's ``score_nodes``, or one made from its ``score``."""
    return _batched(plugin, "score_nodes", "score")


def _batched(plugin, batch_name: str, one_name: str) -> Callable:
    """``plugin.<batch_name>(pod, nodes)`` when the plugin has it, else a list of
    ``plugin.<one_name>(pod, node)`` over the nodes."""
    batch = getattr(plugin, batch_name, None)
    if batch is not None:
        return batch
    one = getattr(plugin, one_name)
    return lambda pod, nodes: [one(pod, node) for node in nodes]
