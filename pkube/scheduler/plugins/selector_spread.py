"""Spread the pods of one owner (controller ownerReference) across nodes (score + normalize)."""

NAME = "SelectorSpread"


def skip_score(pod) -> bool:
    return not pod.owner_uid


def score_key(pod):
    return pod.owner_uid


def score(pod, node) -> int:
    """Raw: how many pods of the same owner the node already has (fewer is better)."""
    if not pod.owner_uid:
        return 0
    return node.owners.get(pod.owner_uid, 0)


def normalize(scores: list[int]) -> list[int]:
    highest = max(scores, default=0)
    if highest == 0:
        return [100] * len(scores)
    return [(highest - s) * 100 // highest for s in scores]


def score_nodes(pod, nodes) -> list[int]:
    """``score`` over many nodes in one pass."""
    owner = pod.owner_uid
    return [n.owners.get(owner, 0) for n in nodes] if owner else [0] * len(nodes)
