"""The Node as this kubelet reports it: what the host has (capacity), what pods may use
(allocatable), how it is doing (conditions), where to reach it (addresses, daemonEndpoints).

`HostFacts` reads the machine (pure readers over /proc and statvfs, paths injectable for
tests); `node_status` turns facts into the Node's status; `status_differs` says whether a
write is due, ignoring heartbeat times.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field

from pkube.api.quantity import cpu_millicores, memory_bytes
from pkube.client.timefmt import rfc3339

KUBELET_VERSION = "v1.32.0-pkube"
RUNTIME_VERSION = "pkube://0.1.0"
MAX_PODS = 110
MEMORY_EVICTION_THRESHOLD = 100 * 1024 * 1024      # memory.available<100Mi, Kubernetes' default
DISK_EVICTION_FRACTION = 0.10                        # nodefs.available<10%
PID_PRESSURE_FRACTION = 0.90
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass
class HostFacts:
    """What the machine has and how loaded it is, read once per report."""

    cpus: int
    memory_total: int
    memory_available: int
    disk_total: int
    disk_available: int
    pids_used: int
    pids_max: int
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str
    architecture: str


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes by field."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def _os_image(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def read_host_facts(data_dir: str, proc: str = "/proc", etc: str = "/etc") -> HostFacts:
    """The host's facts; `data_dir` is the file system whose space counts as
    ephemeral-storage (the kubelet's root dir)."""
    mem = _meminfo(_read(f"{proc}/meminfo"))
    try:
        fs = os.statvfs(data_dir)
        disk_total, disk_available = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    except OSError:
        disk_total = disk_available = 0
    pids_max = int(_read(f"{proc}/sys/kernel/pid_max", "32768").strip() or 32768)
    pids_used = sum(1 for name in os.listdir(proc) if name.isdigit()) if os.path.isdir(proc) else 0
    return HostFacts(
        cpus=len(os.sched_getaffinity(0)), memory_total=mem.get("MemTotal", 0),
        memory_available=mem.get("MemAvailable", 0), disk_total=disk_total, disk_available=disk_available,
        pids_used=pids_used, pids_max=pids_max, kernel=platform.release(),
        os_image=_os_image(_read(f"{etc}/os-release")), machine_id=_read(f"{etc}/machine-id").strip(),
        boot_id=_read(f"{proc}/sys/kernel/random/boot_id").strip(),
        architecture=ARCHITECTURES.get(platform.machine(), platform.machine()))


@dataclass
class NodeConfig:
    """What this kubelet says about its node, apart from the host's facts."""

    name: str
    address: str
    port: int = 10250
    labels: dict = field(default_factory=dict)
    reserved_cpu: str = "0"
    reserved_memory: str = "0"
    max_pods: int = MAX_PODS


def default_node_address() -> str:
    """The address other machines reach this one at: the source address of the default
    route (no packet is sent), else 127.0.0.1."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))   # TEST-NET-1: only selects a route
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def capacity(facts: HostFacts, config: NodeConfig) -> dict:
    return {"cpu": str(facts.cpus), "memory": f"{facts.memory_total // 1024}Ki",
            "pods": str(config.max_pods), "ephemeral-storage": f"{facts.disk_total // 1024}Ki"}


def allocatable(facts: HostFacts, config: NodeConfig) -> dict:
    """Capacity minus what is reserved for the system and the eviction thresholds."""
    cpu = max(0, facts.cpus * 1000 - cpu_millicores(config.reserved_cpu))
    memory = max(0, facts.memory_total - memory_bytes(config.reserved_memory) - MEMORY_EVICTION_THRESHOLD)
    disk = int(facts.disk_total * (1 - DISK_EVICTION_FRACTION))
    return {"cpu": f"{cpu}m", "memory": f"{memory // 1024}Ki", "pods": str(config.max_pods),
            "ephemeral-storage": f"{disk // 1024}Ki"}


def pressures(facts: HostFacts) -> dict[str, bool]:
    """MemoryPressure, DiskPressure, PIDPressure as Kubernetes' default eviction thresholds judge them."""
    return {"MemoryPressure": facts.memory_available < MEMORY_EVICTION_THRESHOLD,
            "DiskPressure": facts.disk_total > 0 and facts.disk_available < facts.disk_total * DISK_EVICTION_FRACTION,
            "PIDPressure": facts.pids_used > facts.pids_max * PID_PRESSURE_FRACTION}


CONDITION_TEXT = {
    ("MemoryPressure", False): ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("MemoryPressure", True): ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ("DiskPressure", False): ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("DiskPressure", True): ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    ("PIDPressure", False): ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("PIDPressure", True): ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    ("Ready", True): ("KubeletReady", "kubelet is posting ready status"),
    ("Ready", False): ("KubeletNotReady", "container runtime network not ready"),
}


def conditions(facts: HostFacts, ready: bool, now, previous: list[dict]) -> list[dict]:
    """The node's conditions at `now`; a condition whose status did not change keeps its
    lastTransitionTime from `previous`."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for kind, active in [*pressures(facts).items(), ("Ready", ready)]:
        status = "True" if active else "False"
        reason, message = CONDITION_TEXT[(kind, active)]
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        stamp = rfc3339(now)
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": stamp, "lastTransitionTime": since or stamp})
    return out


def node_status(facts: HostFacts, config: NodeConfig, ready: bool, now, previous: dict | None = None) -> dict:
    """The Node's whole status as this kubelet reports it."""
    previous = previous or {}
    return {
        "capacity": capacity(facts, config), "allocatable": allocatable(facts, config),
        "conditions": conditions(facts, ready, now, previous.get("conditions") or []),
        "addresses": [{"type": "InternalIP", "address": config.address},
                      {"type": "Hostname", "address": config.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.port}},
        "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.machine_id, "bootID": facts.boot_id,
                     "kernelVersion": facts.kernel, "osImage": facts.os_image,
                     "containerRuntimeVersion": RUNTIME_VERSION, "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
                     "architecture": facts.architecture},
    }


def node_object(facts: HostFacts, config: NodeConfig, ready: bool, now) -> dict:
    """The Node this kubelet registers."""
    labels = {"kubernetes.io/hostname": config.name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": facts.architecture, **config.labels}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": config.name, "labels": labels},
            "spec": {}, "status": node_status(facts, config, ready, now)}


def _without_heartbeats(status: dict) -> dict:
    conds = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in status.get("conditions") or []]
    return {**status, "conditions": conds}


def status_differs(old: dict, new: dict) -> bool:
    """True when `new` says something `old` does not (heartbeat times aside).
    Capacity and allocatable that move by a little (free memory) still count: they are
    written at most once per report period by the caller."""
    return _without_heartbeats(old or {}) != _without_heartbeats(new)


def significant_change(old: dict, new: dict) -> bool:
    """True when a condition's status, the addresses or the node info changed: worth a
    write right away rather than at the next periodic report."""
    def key(status: dict):
        conds = sorted((c.get("type"), c.get("status")) for c in status.get("conditions") or [])
        return conds, status.get("addresses"), status.get("nodeInfo"), status.get("daemonEndpoints")
    return key(old or {}) != key(new)
