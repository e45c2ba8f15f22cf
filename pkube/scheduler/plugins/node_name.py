"""A pod that names its node (spec.nodeName) fits that node only."""

from pkube.scheduler.types import SUCCESS, Code, Status

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


def skip_filter(pod) -> bool:
    return not pod.node_name


def filter_key(pod):
    return pod.node_name


def filter(pod, node) -> Status:
    if not pod.node_name or pod.node_name == node.name:
        return SUCCESS
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (REASON,))
