"""nodeSelector and required node affinity must match the node (filter); the
weights of matching preferred terms make its score (score + normalize).
``node_names`` is kube-scheduler's NodeAffinity PreFilterResult: a pod whose every
required term names its nodes (matchFields metadata.name In, as DaemonSet pods do)
can only go to those, so the framework filters them alone instead of every node."""

from pkube.scheduler.types import SUCCESS, Code, Status, freeze

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"


def skip_filter(pod) -> bool:
    return pod.node_selector is None and pod.required_terms is None


def skip_score(pod) -> bool:
    return not pod.preferred_terms


def filter_key(pod):
    required = _node_affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
    return freeze((pod.pod.get("spec") or {}).get("nodeSelector")), freeze(required)


def score_key(pod):
    return freeze(_node_affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution"))


def _node_affinity(pod) -> dict:
    return ((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}


def node_names(pod):
    """The names of the only nodes ``pod`` (a PodInfo)'s required affinity can match, when every term has a
    ``metadata.name In`` field requirement (a frozenset, maybe empty); None when not restricted."""
    required = _node_affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return None
    names = set()
    for term in terms:
        fields = [f for f in term.get("matchFields") or []
                  if f.get("key") == "metadata.name" and f.get("operator") == "In"]
        if not fields:
            return None
        names |= set.intersection(*(set(f.get("values") or []) for f in fields))
    return frozenset(names)


def filter(pod, node) -> Status:
    if pod.node_selector is not None and not pod.node_selector.matches(node.labels):
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (REASON,))
    if pod.required_terms is not None and not any(t.matches(node) for t in pod.required_terms):
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (REASON,))
    return SUCCESS


def score(pod, node) -> int:
    """Raw: the sum of the weights of the preferred terms the node matches."""
    return sum(weight for weight, term in pod.preferred_terms if term.matches(node))


def normalize(scores: list[int]) -> list[int]:
    highest = max(scores, default=0)
    if highest <= 0:
        return [0] * len(scores)
    return [s * 100 // highest for s in scores]
