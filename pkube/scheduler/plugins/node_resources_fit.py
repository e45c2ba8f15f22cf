"""Requested cpu, memory and pod count must fit in the node's allocatable minus what
its pods (assigned and assumed) already request. Every shortage is reported."""

from pkube.scheduler.types import SUCCESS, Status, unschedulable

NAME = "NodeResourcesFit"


def filter_key(pod):
    return pod.cpu, pod.memory


def filter(pod, node) -> Status:
    reasons = []
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append("Too many pods")
    if pod.cpu and pod.cpu > node.alloc_cpu - node.cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and pod.memory > node.alloc_memory - node.memory:
        reasons.append("Insufficient memory")
    return unschedulable(*reasons) if reasons else SUCCESS


def filter_nodes(pod, nodes) -> list[Status]:
    """``filter`` over many nodes in one pass (the common fitting case costs no call)."""
    cpu, memory = pod.cpu, pod.memory
    return [SUCCESS if (len(n.pods) < n.alloc_pods and (not cpu or cpu <= n.alloc_cpu - n.cpu)
                        and (not memory or memory <= n.alloc_memory - n.memory)) else filter(pod, n)
            for n in nodes]
