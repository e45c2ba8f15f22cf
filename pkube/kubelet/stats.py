"""GET /stats/summary: Kubernetes' stats Summary (what metrics-server and `kubectl top`
read) from the node's /proc and the runtime's cgroups.

CPU usage comes as a counter (usageCoreNanoSeconds); the rate (usageNanoCores) needs two
samples, so the collector keeps the last sample of each cgroup and reports the rate since
it; the first summary after start has no rate.
"""

from __future__ import annotations

import os
import time

from pkube.kubelet.lookup import POD_NAME, POD_NAMESPACE, POD_UID, current_by_pod

NANOS = 1_000_000_000


class Sample:
    """One reading of a CPU counter: monotonic seconds, cumulative nanoseconds."""

    __slots__ = ("at", "usage_ns")

    def __init__(self, at: float, usage_ns: int):
        self.at, self.usage_ns = at, usage_ns


def cpu_rate(previous: Sample | None, current: Sample) -> int | None:
    """Nanocores used between two samples; None without a usable earlier sample (none,
    same instant, or a counter that went back: the cgroup was recreated)."""
    if previous is None or current.at <= previous.at or current.usage_ns < previous.usage_ns:
        return None
    return int((current.usage_ns - previous.usage_ns) / (current.at - previous.at))


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class StatsCollector:
    """Makes summaries. `clock` (monotonic seconds) times the CPU samples, `wall` (epoch
    seconds) stamps them; `proc_root` is where the node's /proc is. Not thread-safe: one
    summary at a time (the server holds a lock)."""

    def __init__(self, runtime, node_name: str, *, proc_root: str = "/proc",
                 clock=time.monotonic, wall=time.time):
        self.runtime, self.node_name, self.proc_root = runtime, node_name, proc_root
        self.clock, self.wall = clock, wall
        self._samples: dict[str, Sample] = {}

    def summary(self) -> dict:
        """The Summary of the node and of every pod with a running sandbox. Blocks (reads
        the runtime's store and cgroups)."""
        seen: set[str] = set()
        containers = current_by_pod(self.runtime.list(labels={POD_UID: None}))
        pods = [self._pod(sandbox, containers.get(sandbox.labels[POD_UID], {}), seen)
                for sandbox in self.runtime.list(labels={POD_UID: None}, kind="sandbox")]
        node = self._node(seen)
        self._samples = {key: sample for key, sample in self._samples.items() if key in seen}
        return {"node": node, "pods": pods}

    # ----- parts -----

    def _node(self, seen: set) -> dict:
        now = self.wall()
        meminfo = _read_keyed_kb(os.path.join(self.proc_root, "meminfo"))
        total, free = meminfo.get("MemTotal", 0), meminfo.get("MemFree", 0)
        usage = max(total - free, 0)
        working_set = max(usage - meminfo.get("Inactive(file)", 0), 0)
        return {"nodeName": self.node_name, "systemContainers": [],
                "startTime": rfc3339(now - _uptime(self.proc_root)),
                "cpu": self._cpu("node", _node_cpu_ns(self.proc_root), now, seen),
                "memory": {"time": rfc3339(now), "availableBytes": max(total - working_set, 0),
                           "usageBytes": usage, "workingSetBytes": working_set}}

    def _pod(self, sandbox, records: dict, seen: set) -> dict:
        """The pod's entry; `records` are its running containers' current instances by name."""
        labels = sandbox.labels
        containers = []
        stats_of = {}
        for name, record in sorted(records.items()):
            stats = self._container_stats(record.id)
            if stats is None:
                continue
            stats_of[name] = stats
            containers.append({"name": name, "startTime": _stamp(record.started_at),
                               **self._usage(f"container/{record.id}", stats, seen)})
        pod_stats = self._pod_cgroup_stats(sandbox) or _summed(stats_of.values())
        return {"podRef": {"name": labels.get(POD_NAME, ""), "namespace": labels.get(POD_NAMESPACE, ""),
                           "uid": labels[POD_UID]},
                "startTime": _stamp(sandbox.started_at), "containers": containers,
                **(self._usage(f"pod/{labels[POD_UID]}", pod_stats, seen) if pod_stats else {})}

    def _usage(self, key: str, stats, seen: set) -> dict:
        """The cpu and memory blocks of one cgroup's CgroupStats."""
        now = self.wall()
        memory = {"time": rfc3339(now)}
        if stats.memory_usage_bytes is not None:
            memory["usageBytes"] = stats.memory_usage_bytes
        if stats.memory_working_set_bytes is not None:
            memory["workingSetBytes"] = stats.memory_working_set_bytes
            if stats.memory_limit_bytes:
                memory["availableBytes"] = max(stats.memory_limit_bytes - stats.memory_working_set_bytes, 0)
        return {"cpu": self._cpu(key, stats.cpu_usage_ns, now, seen), "memory": memory}

    def _cpu(self, key: str, usage_ns: int | None, now: float, seen: set) -> dict:
        block = {"time": rfc3339(now)}
        if usage_ns is None:
            return block
        seen.add(key)
        sample = Sample(self.clock(), usage_ns)
        rate = cpu_rate(self._samples.get(key), sample)
        self._samples[key] = sample
        block["usageCoreNanoSeconds"] = usage_ns
        if rate is not None:
            block["usageNanoCores"] = rate
        return block

    def _container_stats(self, cid: str):
        """The container's CgroupStats, or None when it stopped meanwhile."""
        from pkube.runtime.runtime import ContainerError
        try:
            return self.runtime.stats(cid)
        except ContainerError:
            return None

    def _pod_cgroup_stats(self, sandbox):
        """The pod cgroup's stats (the sandbox's cgroup parent, when it is the pod's own and
        not the runtime's shared default); None otherwise."""
        parent = (sandbox.spec or {}).get("cgroup_parent")
        if not parent or parent == self.runtime.cgroup_parent:
            return None
        try:
            return self.runtime.cgroups.open(parent).stats()
        except Exception:   # noqa: BLE001 - a pod being torn down: fall back to the sum
            return None


def _summed(stats_list):
    """CgroupStats-like sums of the containers' stats (pods without a cgroup of their own);
    None for no containers."""
    from pkube.runtime.cgroups import CgroupStats
    stats_list = list(stats_list)
    if not stats_list:
        return None

    def total(field):
        values = [getattr(s, field) for s in stats_list if getattr(s, field) is not None]
        return sum(values) if values else None
    return CgroupStats(memory_usage_bytes=total("memory_usage_bytes"), memory_limit_bytes=None,
                       cpu_usage_ns=total("cpu_usage_ns"), pids_current=total("pids_current"),
                       memory_working_set_bytes=total("memory_working_set_bytes"))


def _stamp(runtime_time: str) -> str:
    """The runtime's RFC 3339 nanosecond time cut to seconds, as Kubernetes prints times."""
    return runtime_time.split(".", 1)[0].rstrip("Z") + "Z" if runtime_time else runtime_time


def _read_keyed_kb(path: str) -> dict[str, int]:
    """/proc/meminfo as name -> bytes."""
    out = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _node_cpu_ns(proc_root: str) -> int | None:
    """CPU time spent not idle since boot, all CPUs, in nanoseconds (/proc/stat)."""
    with open(os.path.join(proc_root, "stat")) as f:
        first = f.readline().split()
    if not first or first[0] != "cpu":
        return None
    ticks = [int(v) for v in first[1:]]
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)   # less idle and iowait
    return busy * NANOS // os.sysconf("SC_CLK_TCK")


def _uptime(proc_root: str) -> float:
    with open(os.path.join(proc_root, "uptime")) as f:
        return float(f.read().split()[0])
