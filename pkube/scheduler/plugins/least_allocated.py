"""Prefer nodes with the most free cpu and memory after placing the pod (score 0..100)."""

NAME = "NodeResourcesLeastAllocated"


def score_key(pod):
    return pod.nonzero_cpu, pod.nonzero_memory


def score(pod, node) -> int:
    """The mean over cpu and memory of 100 * free / allocatable after placing the pod."""
    cpu_alloc, mem_alloc = node.alloc_cpu, node.alloc_memory
    cpu = node.nonzero_cpu + pod.nonzero_cpu
    memory = node.nonzero_memory + pod.nonzero_memory
    cpu_free = (cpu_alloc - cpu) * 100 // cpu_alloc if 0 < cpu_alloc and cpu <= cpu_alloc else 0
    mem_free = (mem_alloc - memory) * 100 // mem_alloc if 0 < mem_alloc and memory <= mem_alloc else 0
    return (cpu_free + mem_free) // 2


def score_nodes(pod, nodes) -> list[int]:
    """``score`` over many nodes in one pass."""
    pod_cpu, pod_mem = pod.nonzero_cpu, pod.nonzero_memory
    return [((((n.alloc_cpu - n.nonzero_cpu - pod_cpu) * 100 // n.alloc_cpu)
              if 0 < n.alloc_cpu and n.nonzero_cpu + pod_cpu <= n.alloc_cpu else 0)
             + (((n.alloc_memory - n.nonzero_memory - pod_mem) * 100 // n.alloc_memory)
                if 0 < n.alloc_memory and n.nonzero_memory + pod_mem <= n.alloc_memory else 0)) // 2
            for n in nodes]
