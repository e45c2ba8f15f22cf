"""Workload controllers on a real apiserver + etcd with hollow nodes (issue 15).

Each figure runs on a cluster of its own (fresh etcd, `python -m pkube.apiserver`, `python -m
scheduler`, `python -m pkube.controllers` and `python -m pkube.cluster.hollow --nodes N` as processes):
  0. Job of C completions (default 1,000) with parallelism P (default 100) on N hollow nodes
     (default 100), each pod "running" --job-run-seconds (hollow nodes report it Succeeded
     then): seconds from create to the Complete condition;
  1. DaemonSet rolled over N hollow nodes (default 1,000): the DaemonSet is created and
     rolled out (one Ready pod per node), then its image changes under RollingUpdate
     (maxUnavailable 10% by default, or --ds-max-surge); seconds from the image change until
     `kubectl rollout status ds` would say "successfully rolled out" (every node's pod
     updated and available), and the fewest nodes with a Ready pod seen meanwhile (a watch);
  2. StatefulSet of R replicas (default 100) with OrderedReady on hollow nodes: seconds from
     create to R Ready replicas (status.readyReplicas), each pod waiting for the previous
     one to be Running and Ready.
Goals: each <= 10 s (upstream, at the controller-manager's default 20 QPS, takes minutes).
The CPU seconds each process used during a figure show where the time goes.

Usage: python bench/controllers.py [--job-completions 1000] [--job-parallelism 100] [--job-nodes 100]
                                   [--job-run-seconds 0.5] [--ds-nodes 1000] [--ds-max-unavailable 10%]
                                   [--ds-max-surge 0] [--sts-replicas 100] [--sts-nodes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import python_loop_line  # noqa: E402
from pkube.client.aio import AsyncApiClient  # noqa: E402
from pkube.client.errors import Unavailable  # noqa: E402
from pkube.client.kubeconfig import ClientConfig  # noqa: E402
from pkube.client.resources import DAEMONSETS, JOBS, NODES, PODS, STATEFULSETS  # noqa: E402
from pkube.cluster.components import Component, python_module  # noqa: E402
from pkube.cluster.etcd import EtcdProcess, free_port  # noqa: E402
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private  # noqa: E402

REQUESTS = {"requests": {"cpu": "10m", "memory": "16Mi"}}


# -- a cluster of processes --------------------------------------------------------------

@contextlib.contextmanager
def cluster(nodes: int, controllers: str, hollow_args: tuple = ()):
    """A fresh cluster with ``nodes`` hollow nodes registered and the ``controllers`` running;
    yields (url, components). ``hollow_args``: more flags of ``cluster.hollow``. Everything is
    stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="pkube-bench-controllers-") as tmp:
        tmp = Path(tmp)
        etcd = EtcdProcess(data_dir=tmp / "etcd", log_path=tmp / "etcd.log").start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        kubeconfig = tmp / "kubeconfig"
        write_private(kubeconfig, admin_kubeconfig(url, name="bench"))
        components = [
            Component("apiserver", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint, "--port", str(port),
                                                 "--log-level", "warning"),
                      tmp / "apiserver.log", health_url=f"{url}/readyz"),
            Component("hollow", python_module("pkube.cluster.hollow", "--kubeconfig", str(kubeconfig),
                                              "--nodes", str(nodes), *hollow_args), tmp / "hollow.log"),
            Component("scheduler", python_module("pkube.scheduler", "--kubeconfig", str(kubeconfig)),
                      tmp / "scheduler.log"),
            Component("controllers", python_module("pkube.controllers", "--kubeconfig", str(kubeconfig),
                                                   "--controllers", controllers), tmp / "controllers.log"),
        ]
        started = []
        try:
            for component in components:
                component.start()
                started.append(component)
            asyncio.run(_wait_nodes(url, nodes))
            yield url, started
        finally:
            for component in reversed(started):
                component.stop()
            etcd.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def measured(components, figure):
    """Run ``figure()`` (a coroutine function); its result with the CPU seconds each process used."""
    before = {c.name: cpu_seconds(c.proc.pid) for c in components}
    result = asyncio.run(figure())
    result["cpu"] = {c.name: cpu_seconds(c.proc.pid) - before[c.name] for c in components}
    return result


async def wait(check, timeout: float = 1800):
    """Poll ``check`` until true; the time it was. A dropped connection is polled again."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if await check():
                return time.perf_counter()
        except Unavailable:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not done within {timeout}s")
        await asyncio.sleep(0.05)


async def _wait_nodes(url: str, count: int) -> None:
    async with AsyncApiClient(ClientConfig(url)) as client:
        async def registered():
            return len((await client.list(NODES))["items"]) >= count
        await wait(registered, timeout=300)


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# -- 0. a Job of many completions ---------------------------------------------------------------

def job_body(completions: int, parallelism: int) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench-job", "namespace": "default"},
            "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": 0,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [
                         {"name": "c", "image": "busybox:1", "command": ["true"], "resources": REQUESTS}]}}}}


async def job_completes(url: str, completions: int, parallelism: int) -> dict:
    """Figure 0 (see the module docstring)."""
    async with AsyncApiClient(ClientConfig(url), timeout=120) as client:
        async def complete():
            job = await client.get(JOBS, "bench-job", "default")
            conditions = (job.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Failed" and c["status"] == "True" for c in conditions):
                raise RuntimeError(f"the bench Job failed: {conditions}")
            return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
        began = time.perf_counter()
        await client.create(JOBS, job_body(completions, parallelism), "default")
        done_at = await wait(complete)
        return {"complete": done_at - began}


# -- 1. a DaemonSet rolled over many nodes ----------------------------------------------------

def daemonset_body(image: str, max_unavailable, max_surge) -> dict:
    labels = {"app": "bench-ds"}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "bench-ds", "namespace": "default"},
            "spec": {"selector": {"matchLabels": labels},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxUnavailable": max_unavailable, "maxSurge": max_surge}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image, "resources": REQUESTS}]}}}}


async def daemonset_rolled_out(client, nodes: int) -> bool:
    ds = await client.get(DAEMONSETS, "bench-ds", "default")
    s = ds.get("status") or {}
    return (s.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            and s.get("desiredNumberScheduled") == nodes and s.get("updatedNumberScheduled") == nodes
            and s.get("numberAvailable") == nodes)


class ReadyNodes:
    """Follows the DaemonSet's pods on one watch: the fewest nodes with a Ready pod seen."""

    def __init__(self, client, listed: dict):
        self.client, self.rv, self.fewest = client, listed["metadata"]["resourceVersion"], None
        self.pods = {p["metadata"]["name"]: p for p in listed["items"]}

    async def run(self):
        while True:
            async for kind, pod in self.client.watch(PODS, "default", self.rv, "app=bench-ds", timeout_seconds=600):
                self.rv = pod["metadata"].get("resourceVersion", self.rv)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                    self.pods.pop(pod["metadata"]["name"], None)
                else:
                    self.pods[pod["metadata"]["name"]] = pod
                ready = len({p["spec"].get("nodeName") for p in self.pods.values() if is_ready(p)})
                self.fewest = ready if self.fewest is None else min(self.fewest, ready)


async def daemonset_rollout(url: str, nodes: int, max_unavailable, max_surge) -> dict:
    """Figure 1 (see the module docstring)."""
    async with AsyncApiClient(ClientConfig(url), timeout=120) as client:
        began = time.perf_counter()
        await client.create(DAEMONSETS, daemonset_body("busybox:1", max_unavailable, max_surge), "default")
        created_at = await wait(lambda: daemonset_rolled_out(client, nodes))
        watcher = ReadyNodes(client, await client.list(PODS, "default", label_selector="app=bench-ds"))
        watch = asyncio.ensure_future(watcher.run())
        try:
            began_update = time.perf_counter()
            await client.patch(DAEMONSETS, "bench-ds", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:2"}]}}}}, "default", patch_type="strategic")
            done_at = await wait(lambda: daemonset_rolled_out(client, nodes))
        finally:
            watch.cancel()
        return {"create": created_at - began, "update": done_at - began_update, "fewest_ready": watcher.fewest}


# -- 2. an OrderedReady StatefulSet ----------------------------------------------------------

def statefulset_body(replicas: int) -> dict:
    labels = {"app": "bench-sts"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bench-sts", "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": "bench-sts", "selector": {"matchLabels": labels},
                     "podManagementPolicy": "OrderedReady",
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                                           "resources": REQUESTS}]}}}}


async def statefulset_ordered(url: str, replicas: int) -> dict:
    """Figure 2 (see the module docstring)."""
    async with AsyncApiClient(ClientConfig(url), timeout=120) as client:
        async def all_ready():
            sts = await client.get(STATEFULSETS, "bench-sts", "default")
            return int((sts.get("status") or {}).get("readyReplicas") or 0) >= replicas
        began = time.perf_counter()
        await client.create(STATEFULSETS, statefulset_body(replicas), "default")
        done_at = await wait(all_ready)
        return {"ready": done_at - began}


# -- the run ----------------------------------------------------------------------------------

def cpu_line(result: dict) -> str:
    return "  CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["cpu"].items())


def print_job(args) -> None:
    hollow = ("--run-seconds", str(args.job_run_seconds))
    with cluster(args.job_nodes, "job", hollow) as (url, components):
        r = measured(components, lambda: job_completes(url, args.job_completions, args.job_parallelism))
    print(f"Job of {args.job_completions} completions, parallelism {args.job_parallelism}, on {args.job_nodes} "
          f"hollow nodes (each pod runs {args.job_run_seconds} s)")
    print(f"  create -> Complete              {r['complete']:8.1f} s   (goal <= 10 s; floor "
          f"{args.job_completions / args.job_parallelism * args.job_run_seconds:.1f} s of simulated runs)")
    print(cpu_line(r))


def print_daemonset(args) -> None:
    surge = _int_or_percent(args.ds_max_surge)
    unavailable = 0 if surge not in (0, "0%") else _int_or_percent(args.ds_max_unavailable)
    with cluster(args.ds_nodes, "daemonset,garbagecollector") as (url, components):
        r = measured(components, lambda: daemonset_rollout(url, args.ds_nodes, unavailable, surge))
    print(f"DaemonSet over {args.ds_nodes} hollow nodes (RollingUpdate maxUnavailable {unavailable}, "
          f"maxSurge {surge})")
    print(f"  create -> rolled out            {r['create']:8.1f} s")
    print(f"  image change -> rolled out      {r['update']:8.1f} s   (goal <= 10 s)")
    print(f"  fewest nodes with a Ready pod during the update: {r['fewest_ready']}")
    print(cpu_line(r))


def print_statefulset(args) -> None:
    with cluster(args.sts_nodes, "statefulset,garbagecollector") as (url, components):
        r = measured(components, lambda: statefulset_ordered(url, args.sts_replicas))
    print(f"StatefulSet of {args.sts_replicas} (OrderedReady) on {args.sts_nodes} hollow nodes")
    print(f"  create -> {args.sts_replicas} Ready                {r['ready']:8.1f} s   (goal <= 10 s)")
    print(cpu_line(r))


def _int_or_percent(text: str):
    return text if text.endswith("%") else int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-completions", type=int, default=1000)
    parser.add_argument("--job-parallelism", type=int, default=100)
    parser.add_argument("--job-nodes", type=int, default=100)
    parser.add_argument("--job-run-seconds", type=float, default=0.5)
    parser.add_argument("--ds-nodes", type=int, default=1000)
    parser.add_argument("--ds-max-unavailable", default="10%")
    parser.add_argument("--ds-max-surge", default="0", help="non-zero: surge instead of maxUnavailable")
    parser.add_argument("--sts-replicas", type=int, default=100)
    parser.add_argument("--sts-nodes", type=int, default=10)
    parser.add_argument("--only", choices=("job", "daemonset", "statefulset"), help="one figure only")
    return parser.parse_args(argv)


FIGURES = {"job": print_job, "daemonset": print_daemonset, "statefulset": print_statefulset}


def main() -> None:
    args = parse_args()
    print(python_loop_line())
    for name, figure in FIGURES.items():
        if args.only in (None, name):
            figure(args)
    print("anchor: upstream's controller-manager at its default 20 QPS takes minutes for each; "
          "pods are made Ready by hollow nodes (pkube/cluster/hollow.py), no container runs")


if __name__ == "__main__":
    main()
