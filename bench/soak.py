"""Soak: a mixed load against `pkube up --nodes 3 --control-plane 3` for --minutes (default 10),
one apiserver killed -9 halfway (its supervisor restarts it).

    .venv/bin/python -m bench.soak [--minutes 10] [--hollow-nodes 20] [--workers 8]

It starts its own cluster (under the host's kubelet lock, as the e2e tests do), hollow nodes
(`pkube hollow`) for the pods to land on, then runs, through DIR/admin.kubeconfig (the host's
local load balancer) until the time is up: ConfigMap creates, updates (read-modify-write,
retried on conflict), merge patches and deletes, one watch that resumes from its last
resourceVersion, and pod churn (create, wait until a hollow node runs it, delete). A request
that fails for a moment (unreachable, 5xx, 429) is retried; a create that finds its object
after a retry, or a delete that finds it gone, counts as absorbed. It prints, after the
pure-Python loop line: the errors no retry absorbed, p50/p99 latency per verb, the failover
time (from the kill to the first request sent after it that succeeded) and the longest gap
without any successful request, each component's resident memory
(process_resident_memory_bytes from its /metrics, the median of 5 readings 4 s apart; for
etcd also its Go heap in use, go_memstats_heap_inuse_bytes) before
the load, every --sample minutes of it and at its end, and the machine's load average. The
start of the memory comparison is after --warm-up minutes of load (default 2: the watch caches
keep 75 s of events, etcd's history and raft log fill with the first writes, Python's allocator
takes its arenas): the goal is each component within 10 % from there to the end. A second
column compares the end with the first sample a minute after the kill, when the killed
apiserver's clients have moved to another one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.measure import percentile, python_loop_line
from pkube.client.aio import AsyncApiClient
from pkube.client.errors import AlreadyExists, ApiError, Conflict, Gone, NotFound
from pkube.client.kubeconfig import load_kubeconfig
from pkube.client.resources import CONFIGMAPS, PODS
from pkube.cluster import hacluster

HOST = "soak"
MEMBERS = {HOST: "10.200.0.1", f"{HOST}-1": "10.200.0.2", f"{HOST}-2": "10.200.0.3"}
NAMESPACE = "default"
KUBELET_LOCK = Path("/run/lock/pkube-tests-kubelet.lock")
RETRIES = 8
READINGS = 5          # readings per memory sample, 4 s apart (their median)
PORT = 16443


def pkube(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkube.cluster", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def transient(err: ApiError) -> bool:
    return err.code in (429, 500, 502, 503, 504) or err.code == 0


class Load:
    """The clients' shared record: latencies per verb, errors not absorbed, success times."""

    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.absorbed = 0
        self.successes: list[tuple[float, float]] = []     # (sent, done), monotonic
        self.watch_events = 0
        self.watch_resumes = 0

    async def call(self, verb: str, fn, accept=()):
        """`fn()` with retries of transient failures; its result, the error when it is one of
        `accept` (a create retried that finds its object, a delete its object gone, an update
        a conflict), or None when it failed for good (recorded)."""
        began = time.monotonic()
        for attempt in range(RETRIES):
            sent = time.monotonic()
            try:
                result = await fn()
            except ApiError as err:
                if isinstance(err, tuple(accept)):
                    self.absorbed += attempt > 0
                    return err
                if transient(err) and attempt < RETRIES - 1:
                    self.absorbed += 1
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
                    continue
                self.errors.append(f"{verb}: {err.code} {err}"[:200])
                return None
            done = time.monotonic()
            self.latency[verb].append(done - began)
            self.successes.append((sent, done))
            return result
        return None


async def configmap_worker(client, load: Load, worker: int, stop_at: float) -> None:
    """create, update, patch, get, delete one ConfigMap after another."""
    i = 0
    while time.monotonic() < stop_at:
        name = f"soak-{worker}-{i}"
        i += 1
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": "0"}}
        if await load.call("create", lambda: client.create(CONFIGMAPS, body, NAMESPACE), (AlreadyExists,)) is None:
            continue

        async def update():
            current = await client.get(CONFIGMAPS, name, NAMESPACE)
            current["data"]["n"] = str(int(current["data"]["n"]) + 1)
            return await client.replace(CONFIGMAPS, current, NAMESPACE)
        for _ in range(3):
            result = await load.call("update", update, (Conflict,))
            if not isinstance(result, Conflict):
                break
        await load.call("patch", lambda: client.patch(CONFIGMAPS, name, {"data": {"p": str(i)}}, NAMESPACE))
        await load.call("get", lambda: client.get(CONFIGMAPS, name, NAMESPACE))
        await load.call("delete", lambda: client.delete(CONFIGMAPS, name, NAMESPACE), (NotFound,))


async def pod_worker(client, load: Load, worker: int, stop_at: float) -> None:
    """Create a pod, wait until a hollow node reports it Running, delete it."""
    i = 0
    while time.monotonic() < stop_at:
        name = f"churn-{worker}-{i}"
        i += 1
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeSelector": {"node.pkube.io/hollow": "true"},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "c", "image": "busybox"}]}}
        if await load.call("create pod", lambda: client.create(PODS, pod, NAMESPACE), (AlreadyExists,)) is None:
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = await load.call("get", lambda: client.get(PODS, name, NAMESPACE))
            if got and (got.get("status") or {}).get("phase") == "Running":
                break
            await asyncio.sleep(0.5)
        else:
            load.errors.append(f"pod {name} not Running within 30 s")
        await load.call("delete pod", lambda: client.delete(PODS, name, NAMESPACE), (NotFound,))


async def watcher(client, load: Load, stop_at: float) -> None:
    """One ConfigMap watch, resumed from its last resourceVersion when its stream breaks."""
    rv = (await client.list(CONFIGMAPS, NAMESPACE))["metadata"]["resourceVersion"]
    while time.monotonic() < stop_at:
        try:
            async for kind, obj in client.watch(CONFIGMAPS, NAMESPACE, resource_version=rv, timeout_seconds=60):
                rv = obj["metadata"].get("resourceVersion", rv)
                load.watch_events += kind != "BOOKMARK"
                if time.monotonic() > stop_at:
                    return
        except Gone:
            load.errors.append("watch: 410 Gone (had to relist)")
            rv = (await client.list(CONFIGMAPS, NAMESPACE))["metadata"]["resourceVersion"]
        except ApiError:
            load.watch_resumes += 1
            await asyncio.sleep(0.2)


def pids_of(*words: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if all(w.encode() in argv for w in words):
                    found.append(int(entry.name))
    return found


def metric_of(text: str, metric: str = "process_resident_memory_bytes") -> float:
    """The value of the unlabelled `metric` in a Prometheus text page (NaN when absent)."""
    found = re.search(rf"^{metric} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def tls(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def memory(data_dir: Path, port: int, readings: int = READINGS, apart: float = 4.0) -> dict[str, float]:
    """Each component's resident memory (MiB): the median of ``readings`` readings ``apart``
    seconds apart, because a collected heap swings with its collector's cycle (an etcd
    member's Go heap went 61 -> 91 -> 62 MiB within a minute of the soak)."""
    taken = []
    for n in range(readings):
        if n:
            time.sleep(apart)
        taken.append(memory_once(data_dir, port))
    return {name: statistics.median(r[name] for r in taken if name in r) for name in taken[0]}


def memory_once(data_dir: Path, port: int) -> dict[str, float]:
    """Each component's process_resident_memory_bytes (MiB), from its /metrics, and each etcd
    member's Go heap in use (what its collector keeps live; RSS also holds what Go has not
    returned to the system yet): the apiservers
    and etcd members over the bridge (their client certificates), the scheduler,
    controller-manager and proxy of each member on its own loopback (nsenter)."""
    import httpx
    pki = data_dir / "pki"
    out = {}
    for name, ip in MEMBERS.items():
        with contextlib.suppress(httpx.HTTPError):
            out[f"apiserver {name}"] = metric_of(httpx.get(
                f"https://{ip}:{port}/metrics", timeout=10,
                verify=tls(pki / "ca.crt", pki / "admin.crt", pki / "admin.key")).text)
        with contextlib.suppress(httpx.HTTPError):
            etcd = pki / "etcd"
            text = httpx.get(f"https://{ip}:2379/metrics", timeout=10, verify=tls(
                etcd / "ca.crt", etcd / "etcd-admin-client.crt", etcd / "etcd-admin-client.key")).text
            out[f"etcd {name}"] = metric_of(text)
            out[f"etcd {name}, Go heap in use"] = metric_of(text, "go_memstats_heap_inuse_bytes")
        prefix = [] if name == HOST else ["nsenter", f"--net=/run/netns/pkube-node{name.rsplit('-', 1)[1]}"]
        for component, mport in (("scheduler", 10251), ("controller-manager", 10252), ("proxy", 10249)):
            done = subprocess.run([*prefix, sys.executable, "-c",
                                   f"import urllib.request;print(urllib.request.urlopen("
                                   f"'http://127.0.0.1:{mport}/metrics',timeout=10).read().decode())"],
                                  capture_output=True, text=True, timeout=30)
            out[f"{component} {name}"] = metric_of(done.stdout)
    return {k: v / 2 ** 20 for k, v in out.items()}


async def run_load(data_dir: Path, minutes: float, workers: int, pod_workers: int, kill,
                   sample_at: list[float], measure) -> tuple[Load, float, dict]:
    """The load for `minutes`, `kill()` halfway; `measure()` (memory) at each of `sample_at`
    (minutes into the load). Returns the record, the kill's time and {minute: memory}."""
    config = load_kubeconfig(str(data_dir / "admin.kubeconfig"))
    load = Load()
    began = time.monotonic()
    stop_at = began + minutes * 60
    samples: dict[float, dict] = {}
    loop = asyncio.get_running_loop()

    async def sampler():
        for minute in sample_at:
            await asyncio.sleep(max(0.0, began + minute * 60 - time.monotonic()))
            samples[minute] = await loop.run_in_executor(None, measure)

    async with AsyncApiClient(config, timeout=15) as client:
        tasks = [asyncio.create_task(configmap_worker(client, load, w, stop_at)) for w in range(workers)]
        tasks += [asyncio.create_task(pod_worker(client, load, w, stop_at)) for w in range(pod_workers)]
        tasks.append(asyncio.create_task(watcher(client, load, stop_at)))
        tasks.append(asyncio.create_task(sampler()))
        await asyncio.sleep(minutes * 30)
        killed_at = time.monotonic()
        await loop.run_in_executor(None, kill)
        await asyncio.gather(*tasks)
    return load, killed_at, samples


def kill_apiserver() -> None:
    """kill -9 the host's apiserver (the one the host's balancer uses); pkube up restarts it."""
    for pid in pids_of("pkube.apiserver", "--advertise-address", MEMBERS[HOST]):
        os.kill(pid, signal.SIGKILL)


def report(load: Load, killed_at: float, memory_at: dict, warm_up: float, killed_minute: float) -> None:
    total = sum(len(v) for v in load.latency.values())
    print(f"requests that succeeded: {total}; transient failures absorbed by a retry: {load.absorbed}; "
          f"watch events: {load.watch_events}, watch resumes without relist: {load.watch_resumes}")
    print(f"errors not absorbed: {len(load.errors)}")
    for line in load.errors[:10]:
        print(f"  {line}")
    for verb, values in sorted(load.latency.items()):
        print(f"  {verb:<11} n={len(values):>6}  p50 {percentile(values, 0.5) * 1000:7.1f} ms  "
              f"p99 {percentile(values, 0.99) * 1000:7.1f} ms")
    first = min((done for sent, done in load.successes if sent >= killed_at), default=float("nan"))
    dones = sorted(done for _, done in load.successes if killed_at - 5 <= done <= killed_at + 60)
    gap = max((b - a for a, b in zip(dones, dones[1:])), default=float("nan"))
    print(f"failover: first request sent after the kill succeeded {first - killed_at:.2f} s after it; "
          f"longest gap without a success around the kill: {gap:.2f} s")
    report_memory(memory_at, warm_up, killed_minute)
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))


def report_memory(memory_at: dict, warm_up: float, killed_minute: float) -> None:
    """One row per component: its RSS before the load and at each sample; the change from the
    end of the warm-up (the start) to the end, and from the first sample a minute or more after
    the kill to the end (the clients of the killed apiserver have moved by then: the survivor
    that took them serves more from that point on)."""
    columns = ["before", *sorted(m for m in memory_at if m not in ("before", "end")), "end"]
    heads = ["before" if m == "before" else "end" if m == "end" else f"min {m:g}" for m in columns]
    after = min((m for m in columns[1:-1] if m >= killed_minute + 1), default="end")
    since = "end" if after == "end" else f"min {after:g}"
    print(f"resident memory (MiB); start = after {warm_up:g} min of load, goal: end within 10 % of start")
    print(f"  {'':<28}" + "".join(f"{h:>9}" for h in heads) + f"   start->end  {since}->end")
    for name in sorted(memory_at["before"]):
        row = [memory_at[m].get(name, float("nan")) for m in columns]
        start, end = memory_at[warm_up].get(name, float("nan")), memory_at["end"].get(name, float("nan"))
        settled = memory_at[after].get(name, float("nan"))
        note = "  (killed halfway: a new process)" if name == f"apiserver {HOST}" else ""
        print(f"  {name:<28}" + "".join(f"{v:9.1f}" for v in row)
              + f"   {(end - start) / start * 100:+8.0f} %  {(end - settled) / settled * 100:+9.0f} %{note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8, help="ConfigMap clients")
    parser.add_argument("--pod-workers", type=int, default=4, help="pod churn clients")
    parser.add_argument("--hollow-nodes", type=int, default=20)
    parser.add_argument("--warm-up", type=float, default=2.0,
                        help="minutes of load before the memory the end is compared with")
    parser.add_argument("--sample", type=float, default=2.0, help="minutes between memory samples")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="soak a running `pkube up --nodes 3 --control-plane 3` (node name soak) instead "
                             "of starting one")
    args = parser.parse_args(argv)
    if not 0 < args.warm_up < args.minutes:
        parser.error("--warm-up must be shorter than --minutes")
    print(python_loop_line(), flush=True)
    if args.data_dir is not None:
        return soak(args, args.data_dir.resolve())
    data_dir = Path(tempfile.mkdtemp(prefix="pkube-soak-"))
    KUBELET_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(KUBELET_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            up = pkube("up", "-d", "--data-dir", str(data_dir), "--port", str(PORT), "--node-name", HOST,
                       "--kubelet-port", "20250", "--nodes", "3", "--control-plane", "3")
            if up.returncode != 0:
                print(f"pkube up failed: {up.stderr.strip().splitlines()[-1:]}")
                return 1
            return soak(args, data_dir)
        finally:
            pkube("down", "--data-dir", str(data_dir))


def soak(args, data_dir: Path) -> int:
    """Hollow nodes, the memory before, the load with the kill, the memory after, the report."""
    port = int(hacluster.load_topology(data_dir)["apiServers"][0].rsplit(":", 1)[1])
    with open(data_dir / "hollow.log", "wb") as hollow_log:
        hollow = subprocess.Popen([sys.executable, "-m", "pkube.cluster", "hollow", "--data-dir", str(data_dir),
                                   "--nodes", str(args.hollow_nodes)], stdout=subprocess.DEVNULL, stderr=hollow_log)
    try:
        time.sleep(10)      # the hollow nodes register (the pods would wait for them)
        memory_at = {"before": memory(data_dir, port)}
        marks = sorted({args.warm_up, *(m * args.sample for m in range(1, int(args.minutes / args.sample) + 1)
                                         if m * args.sample < args.minutes)})
        load, killed_at, samples = asyncio.run(run_load(data_dir, args.minutes, args.workers, args.pod_workers,
                                                        kill_apiserver, marks, lambda: memory(data_dir, port)))
        memory_at.update(samples, end=memory(data_dir, port))
        report(load, killed_at, memory_at, args.warm_up, args.minutes / 2)
    finally:
        hollow.terminate()
        hollow.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
