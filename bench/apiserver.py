"""Benchmark of the apiserver over a real etcd, next to raw etcd puts (issue 2).

Prints, measured in one run on this machine:
  - pod creates/s and p50/p99 latency at 1 and 50 concurrent clients,
  - the same number of raw etcd puts of the same bytes through aetcd (the limit under us),
    and the ratio apiserver/raw,
  - a list of 10,000 pods: seconds, and apiserver RSS before and after,
  - watch fan-out: 100 watchers x 1,000 events, events/s delivered,
  - custom resource creates/s (a CRD with a schema, pruning, defaulting) next to pod creates/s,
    at 50 clients, same n, same run (issue 14's goal: >= 0.9x),
  - server-side apply creates/s (PATCH application/apply-patch+yaml creating pods) next to pod
    creates/s, at 50 clients, same n, same run (issue 14's goal: >= 0.5x),
  - pod creates/s and p99 at 50 clients on a second, secured apiserver over the same etcd (TLS
    with a client certificate, RBAC when the apiserver has it, the audit log with pkube's
    default policy, Secrets encrypted at rest) next to the plain one, alternated, same run
    (issue 11's goal: secured >= 0.8x plain).

Usage: python bench/apiserver.py [--creates N] [--pods 10000] [--watchers 100] [--events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aetcd  # noqa: E402

from bench import secured  # noqa: E402
from bench.httpload import Connection, HttpError  # noqa: E402
from bench.measure import percentile, python_loop_line, run_concurrent  # noqa: E402

from pkube.cluster.components import Component, python_module  # noqa: E402
from pkube.cluster.etcd import EtcdProcess, free_port  # noqa: E402


def pod_body(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                                     "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


async def run_on_connections(port: int, total: int, concurrency: int, one, tls=None) -> tuple[float, list[float]]:
    """Run ``one(connection, i)`` ``total`` times over ``concurrency`` keep-alive connections
    (TLS with ``tls``, an SSLContext)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker():
        async with Connection("127.0.0.1", port, tls) as conn:
            for i in counter:
                start = time.perf_counter()
                await one(conn, i)
                latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def bench_creates(port: int, prefix: str, total: int, concurrency: int, tls=None):
    async def one(conn, i):
        await conn.request("POST", "/api/v1/namespaces/default/pods", pod_body(f"{prefix}-{i}"), expect=201)
    return await run_on_connections(port, total, concurrency, one, tls)


BENCH_GROUP = "bench.pkube.io"
BENCH_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"apps.{BENCH_GROUP}"},
    "spec": {"group": BENCH_GROUP, "scope": "Namespaced",
             "names": {"plural": "apps", "singular": "app", "kind": "App", "listKind": "AppList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "required": ["image"], "properties": {
                                   "image": {"type": "string", "minLength": 1},
                                   "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                   "command": {"type": "array", "items": {"type": "string"}},
                                   "resources": {"type": "object", "additionalProperties": {
                                       "x-kubernetes-int-or-string": True}}}},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def app_body(name: str) -> dict:
    """A custom object about the size of ``pod_body``."""
    return {"apiVersion": f"{BENCH_GROUP}/v1", "kind": "App",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
            "spec": {"image": "busybox:1.36", "command": ["sleep", "3600"],
                     "resources": {"cpu": "10m", "memory": "16Mi"}}}


async def install_bench_crd(port: int) -> None:
    """Create the bench CRD and wait until its resource is served."""
    async with Connection("127.0.0.1", port) as conn:
        await conn.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", BENCH_CRD,
                           expect=201)
        for _ in range(200):
            try:
                await conn.request("GET", f"/apis/{BENCH_GROUP}/v1/namespaces/default/apps")
                return
            except HttpError:  # not served yet
                await asyncio.sleep(0.05)
    raise RuntimeError("the bench CRD was not served within 10 s")


async def bench_custom_creates(port: int, prefix: str, total: int, concurrency: int):
    async def one(conn, i):
        await conn.request("POST", f"/apis/{BENCH_GROUP}/v1/namespaces/default/apps", app_body(f"{prefix}-{i}"),
                           expect=201)
    return await run_on_connections(port, total, concurrency, one)


async def alternated_rates(port: int, total: int, tag: str, other) -> tuple[float, float]:
    """Pod creates and ``other(port, prefix, total, 50)`` at 50 clients, alternated twice (load
    drifts on a shared machine); their rates per second."""
    pod_secs = other_secs = 0.0
    for round_ in range(2):
        pod_secs += (await bench_creates(port, f"{tag}p{round_}", total, 50))[0]
        other_secs += (await other(port, f"{tag}{round_}", total, 50))[0]
    return 2 * total / pod_secs, 2 * total / other_secs


async def compare_custom_creates(port: int, total: int) -> None:
    """Custom resource creates next to pod creates."""
    await install_bench_crd(port)
    pod_rate, custom_rate = await alternated_rates(port, total, "cr", bench_custom_creates)
    print(f"{f'custom resource creates/s, 50 clients, n={2 * total}':<44}{custom_rate:>14.0f}")
    print(f"{'  pod creates/s, same run':<44}{pod_rate:>14.0f}")
    print(f"{'  custom / built-in (goal >= 0.9)':<44}{custom_rate / pod_rate:>14.2f}")


async def bench_apply_creates(port: int, prefix: str, total: int, concurrency: int):
    """Server-side applies that create pods (PATCH application/apply-patch+yaml, 201)."""
    async def one(conn, i):
        name = f"{prefix}-{i}"
        await conn.request("PATCH", f"/api/v1/namespaces/default/pods/{name}?fieldManager=bench", pod_body(name),
                           expect=201, content_type="application/apply-patch+yaml")
    return await run_on_connections(port, total, concurrency, one)


async def compare_apply_creates(port: int, total: int) -> None:
    """Server-side apply creates next to plain pod creates."""
    create_rate, apply_rate = await alternated_rates(port, total, "ap", bench_apply_creates)
    print(f"{f'apply creates/s (SSA), 50 clients, n={2 * total}':<44}{apply_rate:>14.0f}")
    print(f"{'  pod creates/s, same run':<44}{create_rate:>14.0f}")
    print(f"{'  apply / create (goal >= 0.5)':<44}{apply_rate / create_rate:>14.2f}")


async def wait_ready(port: int, tls, timeout: float = 60) -> None:
    """Until the apiserver at ``port`` answers /readyz over TLS."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with Connection("127.0.0.1", port, tls) as conn:
                await conn.request("GET", "/readyz")
                return
        except (OSError, HttpError, ValueError, IndexError):
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the secured apiserver did not answer /readyz within {timeout:.0f} s")


async def compare_secured(plain: tuple[int, int], secured_port: int, secured_pid: int, pki: Path, setup,
                          total: int) -> None:
    """Pod creates at 50 clients on the plain and the secured apiserver ((port, pid) each),
    alternated twice; with each apiserver's and the client's CPU per create."""
    plain_port, plain_pid = plain
    admin, user = secured.client_context(pki, "admin"), secured.client_context(pki, "user")
    await wait_ready(secured_port, admin)
    if setup.rbac:
        async with Connection("127.0.0.1", secured_port, admin) as conn:
            await conn.request("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
                               secured.bench_user_binding(), expect=201)
    runs: dict[str, list] = {"plain": [0.0, [], 0.0, 0.0], "secured": [0.0, [], 0.0, 0.0]}
    for round_ in range(2):
        for name, port, pid, tls in (("plain", plain_port, plain_pid, None),
                                     ("secured", secured_port, secured_pid, user)):
            server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
            secs, lat = await bench_creates(port, f"{name}{round_}", total, 50, tls)
            runs[name][0] += secs
            runs[name][1] += lat
            runs[name][2] += cpu_seconds(pid) - server_cpu
            runs[name][3] += time.process_time() - client_cpu
    rates = {name: 2 * total / run[0] for name, run in runs.items()}
    what = "TLS + client cert + " + ("RBAC + " if setup.rbac else "") + "audit + encryption"
    print(f"{f'secured creates/s, 50 clients, n={2 * total}':<44}{rates['secured']:>14.0f}   ({what})")
    print(f"{'  p99 latency ms, secured':<44}{percentile(runs['secured'][1], 0.99) * 1e3:>14.1f}")
    print(f"{'  CPU ms per create, apiserver / client':<44}{runs['secured'][2] * 1e3 / (2 * total):>14.3f}"
          f"{runs['secured'][3] * 1e3 / (2 * total):>14.3f}")
    print(f"{'  plain creates/s, same run':<44}{rates['plain']:>14.0f}")
    print(f"{'  p99 latency ms, plain':<44}{percentile(runs['plain'][1], 0.99) * 1e3:>14.1f}")
    print(f"{'  CPU ms per create, apiserver / client':<44}{runs['plain'][2] * 1e3 / (2 * total):>14.3f}"
          f"{runs['plain'][3] * 1e3 / (2 * total):>14.3f}")
    print(f"{'  secured / plain (goal >= 0.8)':<44}{rates['secured'] / rates['plain']:>14.2f}")
    for note in setup.notes:
        print(f"  note: {note}")


async def bench_raw_puts(etcd_port: int, prefix: str, total: int, concurrency: int, value: bytes):
    async with aetcd.Client(host="127.0.0.1", port=etcd_port) as etcd:
        async def one(i):
            await etcd.put(f"/bench-raw/{prefix}/{i}".encode(), value)
        return await run_concurrent(total, concurrency, one)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by the apiserver, etcd and this load generator between start() and stop()."""

    def __init__(self, api_pid: int, etcd_pid: int):
        self.pids = {"apiserver": api_pid, "etcd": etcd_pid}

    def start(self) -> None:
        self.began = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.began["client"] = time.process_time()

    def stop(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) - self.began[name] for name, pid in self.pids.items()}
        used["client"] = time.process_time() - self.began["client"]
        return used


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench_fanout(base: str, etcd_rv: str, watchers: int, events: int) -> tuple[float, float]:
    """100 watchers on configmaps, then ``events`` creates; (events/s delivered, write seconds)."""
    host, port = base.removeprefix("http://").split(":")
    path = f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={etcd_rv}"
    received = [0] * watchers
    done = asyncio.Event()

    async def watcher(idx: int, ready: asyncio.Event):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
        await writer.drain()
        ready.set()
        marker, carry = b'"type":"ADDED"', b""
        try:
            while received[idx] < events:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                window = carry + chunk
                received[idx] += window.count(marker)
                carry = window[-(len(marker) - 1):]
        finally:
            writer.close()
        if all(r >= events for r in received):
            done.set()

    readies = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(watcher(i, readies[i])) for i in range(watchers)]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(0.5)
    began = time.perf_counter()
    async def one(conn, i):
        await conn.request("POST", "/api/v1/namespaces/default/configmaps",
                           {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"fan-{i}"},
                            "data": {"k": "v"}}, expect=201)
    write_secs, _ = await run_on_connections(int(port), events, 20, one)
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - began
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return sum(received) / elapsed, write_secs


async def main_async(args, port: int, etcd: EtcdProcess, api_pid: int, secured_run=None) -> None:
    base = f"http://127.0.0.1:{port}"
    value = json.dumps(pod_body("x" * 10), separators=(",", ":")).encode()
    print(python_loop_line(), flush=True)   # the anchor: this machine's speed in this run
    print(f"{'measure':<44}{'apiserver':>14}{'raw etcd':>14}{'ratio':>8}")
    meter = CpuMeter(api_pid, etcd.proc.pid)
    for concurrency, total in ((1, args.creates // 4), (50, args.creates)):
        meter.start()
        api_secs, api_lat = await bench_creates(port, f"c{concurrency}", total, concurrency)
        api_cpu = meter.stop()
        meter.start()
        raw_secs, raw_lat = await bench_raw_puts(etcd.client_port, f"c{concurrency}", total, concurrency, value)
        raw_cpu = meter.stop()
        api_rate, raw_rate = total / api_secs, total / raw_secs
        print(f"{f'creates/s, {concurrency} client(s), n={total}':<44}{api_rate:>14.0f}{raw_rate:>14.0f}{api_rate / raw_rate:>8.2f}")
        print(f"{f'  p50 latency ms, {concurrency} client(s)':<44}{statistics.median(api_lat) * 1e3:>14.1f}{statistics.median(raw_lat) * 1e3:>14.1f}")
        print(f"{f'  p99 latency ms, {concurrency} client(s)':<44}{percentile(api_lat, 0.99) * 1e3:>14.1f}{percentile(raw_lat, 0.99) * 1e3:>14.1f}")
        for name in ("apiserver", "etcd", "client"):
            print(f"{f'  CPU ms per write, {name}':<44}{api_cpu[name] * 1e3 / total:>14.3f}"
                  f"{raw_cpu[name] * 1e3 / total if name != 'apiserver' else 0:>14.3f}")
    await compare_custom_creates(port, args.creates // 2)
    await compare_apply_creates(port, args.creates // 2)
    if secured_run is not None:
        await compare_secured((port, api_pid), *secured_run, args.creates // 2)
    async with Connection("127.0.0.1", port) as conn:
        have = len(json.loads(await conn.request("GET", "/api/v1/namespaces/default/pods"))["items"])
    if have < args.pods:
        await bench_creates(port, "fill", args.pods - have, 50)
    before = rss_mib(api_pid)
    async with Connection("127.0.0.1", port) as conn:
        began = time.perf_counter()
        items = len(json.loads(await conn.request("GET", "/api/v1/namespaces/default/pods"))["items"])
        list_secs = time.perf_counter() - began
    print(f"{f'list of {items} pods, seconds':<44}{list_secs:>14.3f}")
    print(f"{'  apiserver RSS MiB before -> after':<44}{before:>14.0f}{rss_mib(api_pid):>14.0f}")
    async with Connection("127.0.0.1", port) as conn:
        rv = json.loads(await conn.request("GET", "/api/v1/namespaces/default/configmaps"))["metadata"]["resourceVersion"]
    rate, write_secs = await bench_fanout(base, rv, args.watchers, args.events)
    print(f"{f'watch fan-out {args.watchers}x{args.events}, events/s':<44}{rate:>14.0f}")
    print(f"{'  (writing the events took, seconds)':<44}{write_secs:>14.2f}")
    print("goals: creates >= 0.5x raw at 50 clients; p99 <= 50 ms at 50; list 10k <= 1 s; fan-out >= 50,000/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pkube-bench-") as tmp:
        etcd = EtcdProcess(Path(tmp) / "etcd", log_path=Path(tmp) / "etcd.log").start()
        port = free_port()
        api = Component("apiserver", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint,
                                                   "--bind-address", "127.0.0.1", "--port", str(port)),
                        Path(tmp) / "apiserver.log", health_url=f"http://127.0.0.1:{port}/readyz")
        secured_port, setup = free_port(), secured.secured_flags(Path(tmp) / "secured")
        secured_api = Component("apiserver-secured",
                                python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint, "--bind-address",
                                              "127.0.0.1", "--port", str(secured_port), *setup.flags),
                                Path(tmp) / "apiserver-secured.log", health_url=None)
        try:
            api.start()
            secured_api.start()
            asyncio.run(main_async(args, port, etcd, api.proc.pid,
                                   (secured_port, secured_api.proc.pid, Path(tmp) / "secured" / "pki", setup)))
        finally:
            secured_api.stop()
            api.stop()
            etcd.stop()


if __name__ == "__main__":
    main()
