"""Prefer nodes whose cpu and memory usage stay balanced after placing the pod (0..100)."""

NAME = "NodeResourcesBalancedAllocation"


def score_key(pod):
    return pod.nonzero_cpu, pod.nonzero_memory


def score(pod, node) -> int:
    """100 * (1 - |cpu fraction - memory fraction| / 2), fractions capped at 1."""
    cpu = min((node.nonzero_cpu + pod.nonzero_cpu) / node.alloc_cpu, 1.0) if node.alloc_cpu > 0 else 1.0
    memory = (min((node.nonzero_memory + pod.nonzero_memory) / node.alloc_memory, 1.0)
              if node.alloc_memory > 0 else 1.0)
    return int((1 - abs(cpu - memory) / 2) * 100)


def score_nodes(pod, nodes) -> list[int]:
    """``score`` over many nodes in one pass."""
    pod_cpu, pod_mem = pod.nonzero_cpu, pod.nonzero_memory
    return [int((1 - abs((min((n.nonzero_cpu + pod_cpu) / n.alloc_cpu, 1.0) if n.alloc_cpu > 0 else 1.0)
                         - (min((n.nonzero_memory + pod_mem) / n.alloc_memory, 1.0)
                            if n.alloc_memory > 0 else 1.0)) / 2) * 100)
            for n in nodes]
