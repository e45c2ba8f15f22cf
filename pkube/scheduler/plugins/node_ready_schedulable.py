"""A node must be Ready and not cordoned (spec.unschedulable), unless the pod
tolerates the matching taint (node.kubernetes.io/not-ready or /unschedulable, NoSchedule)."""

from pkube.api.tolerations import tolerated
from pkube.scheduler.types import SUCCESS, Code, Status

NAME = "NodeReadySchedulable"
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
NOT_READY = "node(s) were not ready"
CORDONED = "node(s) were unschedulable"


def filter_key(pod):
    return pod.tolerations_key


def filter(pod, node) -> Status:
    if node.unschedulable and not tolerated(pod.tolerations, UNSCHEDULABLE_TAINT):
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (CORDONED,))
    if not node.ready and not tolerated(pod.tolerations, NOT_READY_TAINT):
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NOT_READY,))
    return SUCCESS


def filter_nodes(pod, nodes) -> list[Status]:
    """``filter`` over many nodes in one pass (ready, uncordoned nodes cost no call)."""
    return [SUCCESS if n.ready and not n.unschedulable else filter(pod, n) for n in nodes]
