"""Taints and tolerations: NoSchedule/NoExecute taints must be tolerated (filter);
untolerated PreferNoSchedule taints lower a node's score (score + normalize)."""

from pkube.api.tolerations import tolerated
from pkube.scheduler.types import SUCCESS, Code, Status

NAME = "TaintToleration"
HARD_EFFECTS = ("NoSchedule", "NoExecute")


def filter_key(pod):
    return pod.tolerations_key


score_key = filter_key


def filter(pod, node) -> Status:
    for taint in node.taints:
        if taint.get("effect") in HARD_EFFECTS and not tolerated(pod.tolerations, taint):
            reason = f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (reason,))
    return SUCCESS


def filter_nodes(pod, nodes) -> list[Status]:
    """``filter`` over many nodes in one pass (untainted nodes cost no call)."""
    return [filter(pod, n) if n.taints else SUCCESS for n in nodes]


def score(pod, node) -> int:
    """Raw: how many PreferNoSchedule taints the pod does not tolerate (fewer is better)."""
    if not node.taints:
        return 0
    prefer_not = [t for t in pod.tolerations if t.get("effect") in (None, "", "PreferNoSchedule")]
    return sum(1 for t in node.taints
               if t.get("effect") == "PreferNoSchedule" and not tolerated(prefer_not, t))


def score_nodes(pod, nodes) -> list[int]:
    """``score`` over many nodes in one pass (untainted nodes cost nothing)."""
    return [score(pod, n) if n.taints else 0 for n in nodes]


def normalize(scores: list[int]) -> list[int]:
    """Reverse: no untolerated taint scores 100, the most-tainted node 0."""
    highest = max(scores, default=0)
    if highest == 0:
        return [100] * len(scores)
    return [100 - s * 100 // highest for s in scores]
