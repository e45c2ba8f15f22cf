"""Filter and score plugins, one module each.

A plugin module has a ``NAME`` and any of:
- ``filter(pod: PodInfo, node: NodeInfo) -> Status``: may the pod run there?
- ``score(pod, node) -> int``: 0..100, higher is better; or a raw value when
  the module also has
- ``normalize(scores: list[int]) -> list[int]``: maps the raw scores of all
  feasible nodes to 0..100.
- ``score_nodes(pod, nodes) -> list[int]``: the same as ``[score(pod, n) for n in nodes]``,
  computed in one pass (a hot path: it saves a Python call per node);
- ``filter_nodes(pod, nodes) -> list[Status]``: likewise for ``filter``;
- ``skip_filter(pod) -> bool`` / ``skip_score(pod) -> bool``: True when the
  plugin cannot matter for this pod on any node (kube-scheduler's PreFilter /
  PreScore "Skip"), so the framework does not call it per node.
All are pure functions of their arguments.
"""
