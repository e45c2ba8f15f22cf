"""Prefer nodes with the most free cpu and memory after placing the pod (score 0..100)."""

NAME = "NodeResourcesLeastAllocated"


def _free_share(requested: int, allocatable: int) -> int:
    if allocatable <= 0 or requested > allocatable:
        return 0
    return (allocatable - requested) * 100 // allocatable


def score(pod, node) -> int:
    cpu = _free_share(node.nonzero_cpu + pod.nonzero_cpu, node.alloc_cpu)
    memory = _free_share(node.nonzero_memory + pod.nonzero_memory, node.alloc_memory)
    return (cpu + memory) // 2
