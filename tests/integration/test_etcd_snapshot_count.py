"""etcd as pkube runs it keeps a bounded raft log in memory: after SNAPSHOT_COUNT writes a
member snapshots to disk and truncates the log (etcd 3.5's default would hold 100,000 entries,
docs/reliability.md). The snapshot file is the sign the bound holds."""

from __future__ import annotations

import asyncio

import aetcd

from pkube.cluster.etcd import SNAPSHOT_COUNT, EtcdProcess


async def put_many(port: int, count: int) -> None:
    async with aetcd.Client(host="127.0.0.1", port=port) as client:
        numbers = iter(range(count))

        async def writer():
            for i in numbers:
                await client.put(f"/soak/{i % 100}".encode(), b"x" * 200)

        await asyncio.gather(*(writer() for _ in range(50)))


def test_a_member_snapshots_and_truncates_its_log_after_snapshot_count_writes(tmp_path):
    member = EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log").start()
    try:
        snapshots = tmp_path / "etcd" / "member" / "snap"
        assert not list(snapshots.glob("*.snap"))
        asyncio.run(put_many(member.client_port, SNAPSHOT_COUNT + 100))
        assert list(snapshots.glob("*.snap")), "no snapshot after SNAPSHOT_COUNT writes: the raft log grows"
    finally:
        member.stop()
