"""Scheduler throughput on a real apiserver + etcd, next to the bare pods/binding rate (issue 5).

For each node count (default 100, 1000, 5000), on a fresh etcd and apiserver:
  1. N Ready Node objects (32 cpu, 128Gi, 150 pods each; the scheduler reads only Nodes,
     so these stand in for hollow nodes);
  2. bare binding rate: B pods nobody schedules, bound by direct pods/binding calls with the
     scheduler's concurrency (8): the ceiling under the scheduler (the bench's own pod watch
     runs during both measurements);
  3. backlog: P pending pods created first, then `python -m pkube.scheduler` started; pods bound
     per second from the first to the last binding seen on a watch;
  4. stream: S more pods created while the scheduler runs; p50/p99 create->bound (from the
     create call returning to the bound pod arriving on the watch).
Prints one table; the goals are >= 1,000 pods/s at 5,000 nodes and >= 0.8 x the bare rate.

Also prints the framework alone (no API): decisions per second over the same node counts,
the CPU ceiling of the scheduling algorithm itself.

Usage: python bench/scheduler.py [--nodes 100,1000,5000] [--pods 10000] [--bare 2000] [--stream 2000]
                                 [--bind-concurrency 8] [--framework-only] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from pkube.client.aio import AsyncApiClient  # noqa: E402
from pkube.client.errors import Gone  # noqa: E402
from pkube.client.kubeconfig import ClientConfig  # noqa: E402
from pkube.client.resources import NODES, PODS  # noqa: E402
from pkube.cluster.components import Component, python_module  # noqa: E402
from pkube.cluster.etcd import EtcdProcess, free_port  # noqa: E402

CONCURRENCY = 32          # creates
BIND_CONCURRENCY = 8      # the scheduler's default --bind-concurrency (bare bindings use the same)
PODS_PER_NODE = 150       # each hollow node's pods capacity


def node_body(name: str) -> dict:
    capacity = {"cpu": "32", "memory": "128Gi", "pods": str(PODS_PER_NODE)}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"bench": "1"}},
            "status": {"capacity": capacity, "allocatable": capacity,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod_body(name: str, scheduler: str = "default-scheduler") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedulerName": scheduler,
                     "containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


async def concurrently(items, one, concurrency: int = CONCURRENCY) -> float:
    """Run ``one(item)`` for every item over ``concurrency`` workers; seconds taken."""
    it = iter(items)

    async def worker():
        for item in it:
            await one(item)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class BoundWatcher:
    """Watches pods from a revision; records when each pod is first seen bound."""

    def __init__(self, client, rv: str):
        self.client, self.rv = client, rv
        self.bound_at: dict[str, float] = {}
        self.relists = 0

    async def run(self):
        """Watch until cancelled; when the apiserver drops this watch as too slow (410), relist
        and count the pods found bound then as bound at the relist (an upper bound)."""
        while True:
            try:
                async for kind, pod in self.client.watch(PODS, "default", self.rv, timeout_seconds=600):
                    self.rv = pod["metadata"].get("resourceVersion", self.rv)
                    if kind != "BOOKMARK":
                        self._seen(pod)
            except Gone:
                self.relists += 1
                listed = await self.client.list_all(PODS, "default")
                for pod in listed["items"]:
                    self._seen(pod)
                self.rv = listed["metadata"]["resourceVersion"]

    def _seen(self, pod: dict) -> None:
        if pod.get("spec", {}).get("nodeName"):
            self.bound_at.setdefault(pod["metadata"]["name"], time.perf_counter())

    async def wait_for_first(self, names) -> None:
        """Until one of ``names`` is bound (polled every 5 ms)."""
        while not any(n in self.bound_at for n in names):
            await asyncio.sleep(0.005)

    async def wait_for(self, names, timeout: float):
        deadline = time.perf_counter() + timeout
        while not all(n in self.bound_at for n in names):
            if time.perf_counter() > deadline:
                missing = sum(1 for n in names if n not in self.bound_at)
                raise RuntimeError(f"{missing} pods not bound within {timeout}s")
            await asyncio.sleep(0.05)


def scheduler_argv(kubeconfig: Path, bind_concurrency: int, profile: Optional[str]) -> list[str]:
    """``python -m pkube.scheduler``, under cProfile writing to ``profile`` when given."""
    args = ("pkube.scheduler", "--kubeconfig", str(kubeconfig), "--bind-concurrency", str(bind_concurrency))
    if profile:
        return python_module("cProfile", "-o", profile, "-m", *args)
    return python_module(*args)


async def measure(url: str, kubeconfig: Path, workdir: Path, nodes: int, args: argparse.Namespace,
                  api_pid: int) -> dict:
    """One node count's figures (see the module docstring); ``args`` as parsed by ``main``."""
    pods, bare, stream = args.pods, args.bare, args.stream
    async with AsyncApiClient(ClientConfig(url), timeout=120) as client:
        await concurrently([f"node-{i}" for i in range(nodes)],
                           lambda n: client.create(NODES, node_body(n)))
        rv = (await client.list(PODS, "default", limit=1))["metadata"]["resourceVersion"]
        watcher = BoundWatcher(client, rv)          # present in both measurements alike
        watch_task = asyncio.ensure_future(watcher.run())
        bare_pods = []
        await concurrently([f"bare-{i}" for i in range(bare)],
                           lambda n: _append(bare_pods, client.create(PODS, pod_body(n, "nobody"))))
        targets = {p["metadata"]["name"]: f"node-{i % nodes}" for i, p in enumerate(bare_pods)}
        api_cpu = cpu_seconds(api_pid)
        bare_secs = await concurrently(bare_pods, lambda p: client.bind(p, targets[p["metadata"]["name"]]),
                                       args.bind_concurrency)

        bare_api_cpu = cpu_seconds(api_pid) - api_cpu
        names = [f"pod-{i}" for i in range(pods)]
        create_secs = await concurrently(names, lambda n: client.create(PODS, pod_body(n)))
        scheduler = Component("scheduler", scheduler_argv(kubeconfig, args.bind_concurrency,
                                                            args.profile and f"{args.profile}.{nodes}"),
                              workdir / f"scheduler-{nodes}.log")
        started = time.perf_counter()
        api_cpu = cpu_seconds(api_pid)
        scheduler.start()
        try:
            await asyncio.wait_for(watcher.wait_for_first(names), timeout=600)
            api_cpu_first, sched_cpu_first = cpu_seconds(api_pid), cpu_seconds(scheduler.proc.pid)
            await watcher.wait_for(names, timeout=1800)
            sched_cpu = cpu_seconds(scheduler.proc.pid)
            steady_api_cpu = cpu_seconds(api_pid) - api_cpu_first
            sched_relists = scheduler.log_path.read_text().count("is gone, relisting")
            sched_api_cpu = cpu_seconds(api_pid) - api_cpu
            times = sorted(watcher.bound_at[n] for n in names)
            result = {"nodes": nodes, "bare_rate": bare / bare_secs, "create_rate": pods / create_secs,
                      "first_bound_after": times[0] - started,
                      "backlog_rate": (len(times) - 1) / max(times[-1] - times[0], 1e-9),
                      "sched_cpu_per_pod_ms": 1000 * sched_cpu / pods, "relists": watcher.relists,
                      "sched_relists": sched_relists,
                      "bare_api_cpu_ms": 1000 * bare_api_cpu / bare,
                      "sched_api_cpu_ms": 1000 * sched_api_cpu / pods,
                      "steady_sched_cpu_ms": 1000 * (sched_cpu - sched_cpu_first) / pods,
                      "steady_api_cpu_ms": 1000 * steady_api_cpu / pods}
            created_at = {}

            async def create_timed(n):
                await client.create(PODS, pod_body(n))
                created_at[n] = time.perf_counter()
            stream_names = [f"stream-{i}" for i in range(stream)]
            await concurrently(stream_names, create_timed, concurrency=8)
            await watcher.wait_for(stream_names, timeout=600)
            latencies = [max(0.0, watcher.bound_at[n] - created_at[n]) for n in stream_names]
            result.update(p50=statistics.median(latencies), p99=percentile(latencies, 0.99))
            return result
        finally:
            scheduler.stop()
            watch_task.cancel()


async def _append(bucket: list, coro):
    bucket.append(await coro)


def run_one(nodes: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="pkube-bench-sched-") as tmp:
        tmp = Path(tmp)
        etcd = EtcdProcess(data_dir=tmp / "etcd", log_path=tmp / "etcd.log").start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = Component("apiserver", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint,
                                                   "--port", str(port), "--log-level", "warning"),
                        tmp / "apiserver.log", health_url=f"{url}/readyz")
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": url}}],
            "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}))
        try:
            api.start()
            return asyncio.run(measure(url, kubeconfig, tmp, nodes, args, api.proc.pid))
        finally:
            api.stop()
            etcd.stop()


def framework_rate(nodes: int, pods: int = 2000) -> float:
    """Decisions per CPU second of Framework.schedule + assume, for ReplicaSet-like pods."""
    from pkube.scheduler.cache import SchedulerCache
    from pkube.scheduler.framework import Framework
    from pkube.scheduler.types import PodInfo
    cache = SchedulerCache()
    for i in range(nodes):
        cache.add_node(node_body(f"node-{i}"))
    framework = Framework()
    bodies = []
    for i in range(pods):
        body = pod_body(f"pod-{i}")
        body["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": "rs-1",
                                                "controller": True}]
        bodies.append(body)
    began = time.process_time()          # CPU time: other processes on the machine do not count
    for body in bodies:
        info = PodInfo.from_pod(body)
        cache.assume(info, framework.schedule(info, cache.node_list(), cache.drain_changed()).node)
    return pods / (time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,5000")
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--bare", type=int, default=2000)
    parser.add_argument("--stream", type=int, default=2000)
    parser.add_argument("--framework-only", action="store_true", help="skip the API measurements")
    parser.add_argument("--bind-concurrency", type=int, default=BIND_CONCURRENCY,
                        help="bindings in flight, for the scheduler and the bare measurement alike")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the scheduler under cProfile, writing FILE.<nodes> (pstats format)")
    args = parser.parse_args()
    node_counts = [int(n) for n in args.nodes.split(",")]
    wanted = args.pods + args.bare + args.stream
    if wanted > min(node_counts) * PODS_PER_NODE:
        parser.error(f"--pods + --bare + --stream = {wanted} pods do not fit on {min(node_counts)} nodes "
                     f"({PODS_PER_NODE} each): the bench would wait forever")
    rates = {n: framework_rate(n) for n in node_counts}
    print("framework alone:", ", ".join(f"{n} nodes {rate:.0f} decisions/s ({1000 / rate:.3f} ms CPU each)"
                                        for n, rate in rates.items()))
    if args.framework_only:
        return
    print(f"{'nodes':>6} {'bare bind/s':>12} {'sched pods/s':>13} {'ratio':>6} {'creates/s':>10} "
          f"{'1st bind s':>10} {'p50 ms':>8} {'p99 ms':>8} {'sched cpu ms/pod':>17} "
          f"{'api cpu ms/bare bind':>21} {'api cpu ms/sched pod':>21}")
    for nodes in node_counts:
        r = run_one(nodes, args)
        print(f"{r['nodes']:>6} {r['bare_rate']:>12.0f} {r['backlog_rate']:>13.0f} "
              f"{r['backlog_rate'] / r['bare_rate']:>6.2f} {r['create_rate']:>10.0f} "
              f"{r['first_bound_after']:>10.1f} {r['p50'] * 1000:>8.0f} {r['p99'] * 1000:>8.0f} "
              f"{r['sched_cpu_per_pod_ms']:>17.2f} {r['bare_api_cpu_ms']:>21.2f} "
              f"{r['sched_api_cpu_ms']:>21.2f}", flush=True)
        print(f"       after the first binding: scheduler {r['steady_sched_cpu_ms']:.2f}, "
              f"apiserver {r['steady_api_cpu_ms']:.2f} ms CPU per pod (startup lists excluded)")
        if r["sched_relists"]:
            print(f"       (the scheduler's watches fell behind and relisted {r['sched_relists']}x)")
        if r["relists"]:
            print(f"       (the bench's pod watch fell behind and relisted {r['relists']}x: "
                  "pods found bound by a relist count as bound then, so rates are lower bounds)")
    print("anchors: goal >= 1000 pods/s at 5000 nodes and >= 0.8 x bare binding rate; "
          "kube-scheduler CI floor 680-810 pods/s at 5000 nodes")


if __name__ == "__main__":
    main()
