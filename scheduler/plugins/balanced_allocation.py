"""Prefer nodes whose cpu and memory usage stay balanced after placing the pod (0..100)."""

NAME = "NodeResourcesBalancedAllocation"


def _fraction(requested: int, allocatable: int) -> float:
    if allocatable <= 0:
        return 1.0
    return min(requested / allocatable, 1.0)


def score(pod, node) -> int:
    cpu = _fraction(node.nonzero_cpu + pod.nonzero_cpu, node.alloc_cpu)
    memory = _fraction(node.nonzero_memory + pod.nonzero_memory, node.alloc_memory)
    std = abs(cpu - memory) / 2
    return int((1 - std) * 100)
