"""The store next to raw etcd: what EtcdStorage and the watch cache cost (issue 2).

Prints, measured in one run on this machine on a fresh etcd:
  - creates/s and p50/p99 through EtcdStorage.create at 1 and 50 concurrent callers,
  - raw aetcd puts of the same bytes at the same concurrency, and the ratio,
  - raw aetcd create transactions (put if absent: what a create must cost at least),
  - guaranteed_update/s at 50 callers on 50 different keys,
  - list of N objects through EtcdStorage.list and .list_raw (seconds),
  - watch-cache fan-out: W subscribers x E events, events/s delivered (each encoded
    with wire_line, as the apiserver does).

Usage: python bench/etcd_raw.py [--ops 2000] [--list 10000] [--watchers 100] [--events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aetcd  # noqa: E402

from pkube.apiserver.storage.cacher import CachedStorage  # noqa: E402
from pkube.apiserver.storage.etcd import EtcdStorage  # noqa: E402
from pkube.apiserver.storage.events import wire_line  # noqa: E402
from bench.measure import percentile, run_concurrent  # noqa: E402
from pkube.cluster.etcd import EtcdProcess  # noqa: E402


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": {"app": "bench"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                     "imagePullPolicy": "IfNotPresent",
                                     "terminationMessagePath": "/dev/termination-log"}],
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30},
            "status": {"phase": "Pending"}}


def report(label: str, total: int, seconds: float, latencies: list[float]) -> float:
    rate = total / seconds
    print(f"{label:44s} {rate:9.0f} ops/s  p50 {percentile(latencies, .5) * 1e3:6.2f} ms  "
          f"p99 {percentile(latencies, .99) * 1e3:6.2f} ms")
    return rate


def create_txn(client: aetcd.Client, key: bytes, value: bytes):
    """The transaction a create needs, through aetcd: put only if absent."""
    return client.transaction(compare=[client.transactions.create(key) == 0],
                              success=[client.transactions.put(key, value)], failure=[])


async def bench_writes(store: EtcdStorage, client: aetcd.Client, ops: int) -> None:
    value = json.dumps(pod("x"), separators=(",", ":")).encode()
    for concurrency in (1, 50):
        tag = f"c{concurrency}"
        raw = report(f"raw aetcd put, {concurrency} concurrent", ops, *await run_concurrent(
            ops, concurrency, lambda i: client.put(f"/raw/{tag}/{i}".encode(), value)))
        report(f"raw aetcd txn create_revision==0, {concurrency} conc.", ops, *await run_concurrent(
            ops, concurrency, lambda i: create_txn(client, f"/rawtxn/{tag}/{i}".encode(), value)))
        ours = report(f"EtcdStorage.create, {concurrency} concurrent", ops, *await run_concurrent(
            ops, concurrency, lambda i: store.create(f"/registry/pods/{tag}/p{i}", pod(f"p{i}"))))
        print(f"{'':44s} ratio create/raw = {ours / raw:.2f} (goal >= 0.5 at 50)")
    report("guaranteed_update, 50 concurrent", ops, *await run_concurrent(
        ops, 50, lambda i: store.guaranteed_update(f"/registry/pods/c50/p{i % 50}",
                                                   lambda o: {**o, "status": {"phase": str(i)}})))


async def bench_list(store: EtcdStorage, count: int) -> None:
    await run_concurrent(count, 50, lambda i: store.create(f"/registry/pods/list/p{i:06d}", pod(f"p{i}")))
    began = time.perf_counter()
    result = await store.list("/registry/pods/list/")
    print(f"{'list ' + str(len(result.items)) + ' pods (decoded)':44s} {time.perf_counter() - began:9.3f} s")
    began = time.perf_counter()
    raw = await store.list_raw("/registry/pods/list/")
    body = b'{"items":[' + b",".join(raw.items) + b"]}"
    print(f"{'list_raw ' + str(len(raw.items)) + ' pods (JSON bytes joined)':44s} "
          f"{time.perf_counter() - began:9.3f} s  ({len(body) >> 20} MiB)")


async def bench_fan_out(store: EtcdStorage, watchers: int, events: int) -> None:
    cached = CachedStorage(store, buffer=events * 2)
    subscribers = [await cached.subscribe("/registry/configmaps/", 0) for _ in range(watchers)]
    delivered = 0

    async def consume(sub):
        nonlocal delivered
        seen = 0
        while seen < events:
            batch = await sub.batch()
            for event in batch:
                wire_line(event)
            seen += len(batch)
        delivered += seen

    consumers = [asyncio.ensure_future(consume(s)) for s in subscribers]
    began = time.perf_counter()
    await run_concurrent(events, 50, lambda i: store.create(f"/registry/configmaps/fan/c{i}",
                                                          {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}}))
    await asyncio.gather(*consumers)
    seconds = time.perf_counter() - began
    print(f"{f'fan-out {watchers} watchers x {events} events':44s} {delivered / seconds:9.0f} events/s "
          f"delivered ({seconds:.2f} s, writes included)")
    for cache in list(cached._caches.values()):
        await cache.close()


async def main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="pkube-bench-") as tmp:
        etcd = EtcdProcess(data_dir=Path(tmp) / "etcd").start()
        try:
            store = await EtcdStorage.connect("127.0.0.1", etcd.client_port)
            async with aetcd.Client(host="127.0.0.1", port=etcd.client_port) as client:
                await bench_writes(store, client, args.ops)
            await bench_list(store, args.list)
            await bench_fan_out(store, args.watchers, args.events)
            await store.close()
        finally:
            etcd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--list", type=int, default=10000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
