"""Deployment rollout on a real apiserver + etcd with hollow nodes (issue 5).

On a fresh etcd and apiserver, with `python -m pkube.scheduler`, `python -m pkube.controllers
--controllers replicaset,deployment,garbagecollector` and `python -m pkube.cluster.hollow
--nodes N` running as processes:
  1. apply: a Deployment of R replicas (RollingUpdate 25%/25%) is created; seconds until
     `kubectl rollout status` would say "successfully rolled out" (updated = replicas =
     available = R, observedGeneration current), and until all R pods are Ready;
  2. rolling update: the template's image changes; seconds until the rollout is complete
     again and no pod of the old template is left.
A watch on the pods reports, for the rolling update, the most pods seen at once and the
fewest Ready ones (the bounds are R + 25% and R - 25%).

The CPU seconds each process used over both phases show where the time goes.

Usage: python bench/deployment.py [--replicas 1000] [--nodes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pkube.client.aio import AsyncApiClient  # noqa: E402
from pkube.client.errors import Unavailable  # noqa: E402
from pkube.client.kubeconfig import ClientConfig  # noqa: E402
from pkube.client.resources import DEPLOYMENTS, PODS  # noqa: E402
from pkube.cluster.components import Component, python_module  # noqa: E402
from pkube.cluster.etcd import EtcdProcess, free_port  # noqa: E402
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private  # noqa: E402


def deployment_body(replicas: int, image: str) -> dict:
    labels = {"app": "bench"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image, "resources": {
                                      "requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class PodCounter:
    """Follows the bench's pods on one watch: live ones, Ready ones, and extremes."""

    def __init__(self, client, rv: str):
        self.client, self.rv = client, rv
        self.pods: dict[str, dict] = {}
        self.most, self.fewest_ready = 0, None

    async def run(self):
        while True:
            async for kind, pod in self.client.watch(PODS, "default", self.rv, "app=bench", timeout_seconds=600):
                self.rv = pod["metadata"].get("resourceVersion", self.rv)
                if kind == "BOOKMARK":
                    continue
                name = pod["metadata"]["name"]
                if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = pod
                self.note()

    def note(self):
        self.most = max(self.most, len(self.pods))
        ready = self.ready()
        self.fewest_ready = ready if self.fewest_ready is None else min(self.fewest_ready, ready)

    def ready(self, image: str | None = None) -> int:
        return sum(1 for p in self.pods.values() if is_ready(p)
                   and (image is None or p["spec"]["containers"][0]["image"] == image))

    def reset(self):
        self.most, self.fewest_ready = len(self.pods), self.ready()


async def rolled_out(client, replicas: int) -> bool:
    d = await client.get(DEPLOYMENTS, "bench", "default")
    s = d.get("status") or {}
    return (s.get("observedGeneration", 0) >= d["metadata"]["generation"] and s.get("updatedReplicas") == replicas
            and s.get("replicas") == replicas and s.get("availableReplicas") == replicas)


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
        await asyncio.sleep(0.1)


async def measure(url: str, replicas: int) -> dict:
    async with AsyncApiClient(ClientConfig(url), timeout=120) as client:
        rv = (await client.list(PODS, "default", limit=1))["metadata"]["resourceVersion"]
        counter = PodCounter(client, rv)
        watch = asyncio.ensure_future(counter.run())
        try:
            began = time.perf_counter()
            await client.create(DEPLOYMENTS, deployment_body(replicas, "busybox:1"), "default")
            ready_at = await wait(lambda: _true(counter.ready("busybox:1") >= replicas))
            done_at = await wait(lambda: rolled_out(client, replicas))
            result = {"apply_ready": ready_at - began, "apply_complete": done_at - began}
            counter.reset()
            began = time.perf_counter()
            await client.patch(DEPLOYMENTS, "bench", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:2"}]}}}}, "default")
            done_at = await wait(lambda: rolled_out(client, replicas))
            gone_at = await wait(lambda: _true(len(counter.pods) == replicas
                                               and counter.ready("busybox:2") == replicas))
            result.update(update_complete=done_at - began, update_settled=gone_at - began,
                          most=counter.most, fewest_ready=counter.fewest_ready)
            return result
        finally:
            watch.cancel()


async def _true(value: bool) -> bool:
    return value


def kubeconfig_file(path: Path, url: str) -> Path:
    write_private(path, admin_kubeconfig(url, name="bench"))
    return path


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="pkube-bench-deploy-") as tmp:
        tmp = Path(tmp)
        etcd = EtcdProcess(data_dir=tmp / "etcd", log_path=tmp / "etcd.log").start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        kubeconfig = str(kubeconfig_file(tmp / "kubeconfig", url))
        api = Component("apiserver", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint,
                                                   "--port", str(port), "--log-level", "warning"),
                        tmp / "apiserver.log", health_url=f"{url}/readyz")
        others = [
            Component("hollow", python_module("pkube.cluster.hollow", "--kubeconfig", kubeconfig,
                                              "--nodes", str(args.nodes)), tmp / "hollow.log"),
            Component("scheduler", python_module("pkube.scheduler", "--kubeconfig", kubeconfig), tmp / "scheduler.log"),
            Component("controllers", python_module("pkube.controllers", "--kubeconfig", kubeconfig, "--controllers",
                                                   "replicaset,deployment,garbagecollector"),
                      tmp / "controllers.log"),
        ]
        started = []
        try:
            api.start()
            started.append(api)
            for component in others:
                component.start()
                started.append(component)
            asyncio.run(_wait_nodes(url, args.nodes))
            cpu = {c.name: cpu_seconds(c.proc.pid) for c in started}
            result = asyncio.run(measure(url, args.replicas))
            result["cpu"] = {c.name: cpu_seconds(c.proc.pid) - cpu[c.name] for c in started}
            return result
        finally:
            for component in reversed(started):
                component.stop()
            etcd.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


async def _wait_nodes(url: str, count: int) -> None:
    from pkube.client.resources import NODES
    async with AsyncApiClient(ClientConfig(url)) as client:
        async def registered():
            return len((await client.list(NODES))["items"]) >= count
        await wait(registered, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    r = run(args)
    surge = -(-args.replicas * 25 // 100)
    unavailable = args.replicas * 25 // 100
    print(f"deployment of {args.replicas} replicas on {args.nodes} hollow nodes")
    print(f"  apply -> all pods Ready        {r['apply_ready']:8.1f} s")
    print(f"  apply -> rollout complete      {r['apply_complete']:8.1f} s")
    print(f"  rolling update -> complete     {r['update_complete']:8.1f} s")
    print(f"  rolling update -> old pods gone{r['update_settled']:8.1f} s")
    print(f"  during the update: most pods {r['most']} (bound {args.replicas + surge}), "
          f"fewest Ready {r['fewest_ready']} (bound {args.replicas - unavailable})")
    print("  CPU seconds over both phases: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items()))
    print("  anchor: none published for Kubernetes; pods are made Ready by hollow nodes (pkube/cluster/hollow.py)")


if __name__ == "__main__":
    main()
