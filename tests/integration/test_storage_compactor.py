"""The compactor against a real etcd: old revisions become Compacted, the window stays."""

from __future__ import annotations

import asyncio

import pytest

from pkube.apiserver.storage.compactor import Compactor
from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.apiserver.storage.interface import Compacted


def test_compactor_keeps_the_window_and_drops_older_history(etcd):
    async def main():
        store = await EtcdStorage.connect("127.0.0.1", etcd.client_port)
        ticks = asyncio.Event()

        async def sleep(_seconds):
            await ticks.wait()
            ticks.clear()

        compactor = Compactor(store, interval=1, window=3, sleep=sleep)
        try:
            first = await store.create("/registry/configmaps/ns/c", {"metadata": {"name": "c"}, "n": 0})
            for n in range(1, 6):
                await store.guaranteed_update("/registry/configmaps/ns/c", lambda o, n=n: {**o, "n": n})
            now = await store.current_revision()
            compactor.start()
            ticks.set()
            for _ in range(500):
                if compactor.compacted:
                    break
                await asyncio.sleep(0.01)
            assert compactor.compacted == now - 3
            with pytest.raises(Compacted):
                await store.list("/registry/configmaps/", revision=int(first["metadata"]["resourceVersion"]))
            kept = await store.list("/registry/configmaps/", revision=now - 3)
            assert kept.items[0]["n"] == 2
        finally:
            await compactor.stop()
            await store.close()

    asyncio.run(main())
