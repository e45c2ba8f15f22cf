"""What filter and score plugins see: a pod and a node, pre-digested once.

``PodInfo`` is computed once per scheduling attempt (requests in millicores
and bytes, host ports, tolerations, parsed node selector and affinity);
``NodeInfo`` is kept up to date by the cache as pods come and go (requested
totals, used host ports, pods per owner), so plugins are cheap, pure reads.
``Status`` is a plugin's verdict: SUCCESS, or UNSCHEDULABLE with the
reasons Kubernetes prints ("Insufficient cpu").
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

from pkube.api.quantity import cpu_millicores, memory_bytes
from pkube.api.selectors import (DOES_NOT_EXIST, EXISTS, GREATER, IN, LESS, NOT_IN, LabelSelector,
                           make_requirement)

DEFAULT_MILLI_CPU = 100                 # what scoring assumes for a container without requests
DEFAULT_MEMORY = 200 * 1024 * 1024
DEFAULT_MAX_PODS = 110
NODE_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST,
                  "Gt": GREATER, "Lt": LESS}
TERMINAL_PHASES = ("Succeeded", "Failed")


class Code(enum.IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 1
    UNSCHEDULABLE_AND_UNRESOLVABLE = 2
    ERROR = 3


@dataclass(frozen=True)
class Status:
    """A plugin's verdict; ``reasons`` are counted per node in the failure message."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


SUCCESS = Status()


def unschedulable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE, reasons)


def freeze(value):
    """A hashable copy of JSON-like data (for keys): dicts become tagged, sorted item tuples."""
    if isinstance(value, dict):
        return ("{}",) + tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def pod_key(pod: dict) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace') or 'default'}/{meta['name']}"


@dataclass
class NodeSelectorTerm:
    """One required/preferred node selector term: label expressions AND name fields."""

    labels: LabelSelector
    fields: LabelSelector

    def matches(self, node: "NodeInfo") -> bool:
        if self.labels.empty and self.fields.empty:
            return False                 # an empty term matches no node
        return self.labels.matches(node.labels) and self.fields.matches(node.fields)


@dataclass
class PodInfo:
    """A pending pod, digested for the plugins. Build with ``PodInfo.from_pod``."""

    pod: dict
    key: str
    cpu: int = 0                         # requested millicores
    memory: int = 0                      # requested bytes
    nonzero_cpu: int = 0                 # with scoring defaults for containers without requests
    nonzero_memory: int = 0
    host_ports: tuple = ()               # (host_ip, protocol, port)
    tolerations: tuple = ()
    node_selector: Optional[LabelSelector] = None
    required_terms: Optional[list] = None   # None: no required affinity
    preferred_terms: tuple = ()          # (weight, NodeSelectorTerm)
    owner_uid: Optional[str] = None
    node_name: str = ""

    @classmethod
    def from_pod(cls, pod: dict) -> "PodInfo":
        """Digest ``pod``; raises ValueError (QuantityError, SelectorError) on malformed specs."""
        spec = pod.get("spec") or {}
        info = cls(pod=pod, key=pod_key(pod), node_name=spec.get("nodeName") or "",
                   tolerations=tuple(spec.get("tolerations") or ()),
                   host_ports=tuple(_host_ports(spec)), owner_uid=_controller_uid(pod))
        info.cpu, info.memory, info.nonzero_cpu, info.nonzero_memory = _requests(spec)
        if spec.get("nodeSelector"):
            info.node_selector = LabelSelector([make_requirement(k, IN, [str(v)])
                                                for k, v in spec["nodeSelector"].items()])
        _digest_affinity(info, ((spec.get("affinity") or {}).get("nodeAffinity") or {}))
        return info

    @cached_property
    def tolerations_key(self) -> tuple:
        """The tolerations, hashable (plugins' equivalence keys)."""
        return freeze(self.tolerations)


def same_footprint(old: dict, new: dict) -> bool:
    """Whether two versions of a pod count the same on a node: the containers (requests,
    host ports), init containers, overhead and owner references are equal."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    return (all(old_spec.get(f) == new_spec.get(f) for f in ("containers", "initContainers", "overhead"))
            and (old.get("metadata") or {}).get("ownerReferences") == (new.get("metadata") or {}).get("ownerReferences"))


def _requests(spec: dict) -> tuple[int, int, int, int]:
    cpu = mem = nz_cpu = nz_mem = 0
    for c in spec.get("containers") or []:
        c_cpu, c_mem = _container_requests(c)
        cpu, mem = cpu + c_cpu, mem + c_mem
        nz_cpu += c_cpu or DEFAULT_MILLI_CPU
        nz_mem += c_mem or DEFAULT_MEMORY
    for c in spec.get("initContainers") or []:
        c_cpu, c_mem = _container_requests(c)
        cpu, mem, nz_cpu, nz_mem = max(cpu, c_cpu), max(mem, c_mem), max(nz_cpu, c_cpu), max(nz_mem, c_mem)
    overhead = spec.get("overhead") or {}
    o_cpu = cpu_millicores(overhead["cpu"]) if "cpu" in overhead else 0
    o_mem = memory_bytes(overhead["memory"]) if "memory" in overhead else 0
    return cpu + o_cpu, mem + o_mem, nz_cpu + o_cpu, nz_mem + o_mem


def _container_requests(container: dict) -> tuple[int, int]:
    resources = container.get("resources") or {}
    requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    cpu = cpu_millicores(requests["cpu"]) if "cpu" in requests else 0
    mem = memory_bytes(requests["memory"]) if "memory" in requests else 0
    return cpu, mem


def _host_ports(spec: dict):
    for c in spec.get("containers") or []:
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                yield (port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", int(port["hostPort"]))


def _controller_uid(pod: dict) -> Optional[str]:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _digest_affinity(info: PodInfo, affinity: dict) -> None:
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        info.required_terms = [_term(t) for t in required.get("nodeSelectorTerms") or []]
    info.preferred_terms = tuple((int(p.get("weight") or 0), _term(p.get("preference") or {}))
                                 for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or [])


def _term(term: dict) -> NodeSelectorTerm:
    return NodeSelectorTerm(_selector(term.get("matchExpressions")), _selector(term.get("matchFields")))


def _selector(expressions) -> LabelSelector:
    requirements = []
    for e in expressions or []:
        operator = e.get("operator")
        if operator not in NODE_OPERATORS:
            raise ValueError(f"node selector operator {operator!r} is not one of {sorted(NODE_OPERATORS)}")
        requirements.append(make_requirement(e.get("key", ""), NODE_OPERATORS[operator],
                                             [str(v) for v in e.get("values") or []]))
    return LabelSelector(requirements)


@dataclass
class NodeInfo:
    """One node and the pods the scheduler counts on it (assigned and assumed).

    ``node`` is None for a placeholder holding pods of a node not seen yet.
    """

    name: str
    node: Optional[dict] = None
    labels: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)
    taints: tuple = ()
    unschedulable: bool = False
    ready: bool = False
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_pods: int = DEFAULT_MAX_PODS
    cpu: int = 0
    memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pods: dict = field(default_factory=dict)          # key -> PodInfo
    used_ports: Counter = field(default_factory=Counter)
    owners: Counter = field(default_factory=Counter)

    @classmethod
    def from_node(cls, node: dict) -> "NodeInfo":
        info = cls(name=node["metadata"]["name"])
        info.set_node(node)
        return info

    def set_node(self, node: dict) -> None:
        """Take a new version of the Node object; the pods stay."""
        spec, status = node.get("spec") or {}, node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.node = node
        self.labels = dict((node.get("metadata") or {}).get("labels") or {})
        self.fields = {"metadata.name": self.name}
        self.taints = tuple(spec.get("taints") or ())
        self.unschedulable = bool(spec.get("unschedulable"))
        self.ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        self.alloc_cpu = cpu_millicores(alloc["cpu"]) if "cpu" in alloc else 0
        self.alloc_memory = memory_bytes(alloc["memory"]) if "memory" in alloc else 0
        self.alloc_pods = int(alloc.get("pods") or DEFAULT_MAX_PODS)

    def add_pod(self, pod: PodInfo) -> None:
        self.remove_pod(pod.key)
        self.pods[pod.key] = pod
        self._account(pod, +1)

    def remove_pod(self, key: str) -> Optional[PodInfo]:
        pod = self.pods.pop(key, None)
        if pod is not None:
            self._account(pod, -1)
        return pod

    def _account(self, pod: PodInfo, sign: int) -> None:
        self.cpu += sign * pod.cpu
        self.memory += sign * pod.memory
        self.nonzero_cpu += sign * pod.nonzero_cpu
        self.nonzero_memory += sign * pod.nonzero_memory
        for port in pod.host_ports:
            self.used_ports[port] += sign
            if self.used_ports[port] <= 0:
                del self.used_ports[port]
        if pod.owner_uid:
            self.owners[pod.owner_uid] += sign
            if self.owners[pod.owner_uid] <= 0:
                del self.owners[pod.owner_uid]
