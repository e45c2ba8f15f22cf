"""The watch cache (pkube/apiserver/storage/cacher.py) on a real etcd."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pkube.apiserver.storage.cacher import CachedStorage, Subscriber, WatchCache, WatcherTooSlow
from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.apiserver.storage.events import wire_line
from pkube.apiserver.storage.interface import Compacted, StorageUnavailable
from pkube.cluster.etcd import EtcdProcess
from tests.helpers.waiting import until

PODS = "/registry/pods/"


def pod(name: str, ns: str = "ns1") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"n": name}}, "spec": {}}


def run(etcd, body, **cache_args):
    """Run ``body(cached)`` on a CachedStorage over a fresh EtcdStorage."""
    async def main():
        cached = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port), **cache_args)
        try:
            return await body(cached)
        finally:
            await cached.close()
    return asyncio.run(main())


async def no_tasks_left(timeout: float = 5.0) -> bool:
    """True once only the calling task is left (gRPC ends its own tasks shortly after a cancel)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while asyncio.all_tasks() != {asyncio.current_task()}:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def take(events, n: int, timeout: float = 10.0) -> list:
    async def collect():
        return [await anext(events) for _ in range(n)]
    return await asyncio.wait_for(collect(), timeout)


def names(events) -> list[str]:
    return [e.object["metadata"]["name"] for e in events]


def test_fan_out_to_many_subscribers_in_order(etcd):
    async def body(cached):
        subscribers = [await cached.subscribe(PODS, 0) for _ in range(100)]
        for i in range(50):
            await cached.create(f"{PODS}ns1/p{i}", pod(f"p{i}"))
        expected = [f"p{i}" for i in range(50)]
        for sub in subscribers:
            got = await take(sub, 50)
            assert names(got) == expected
            await sub.aclose()
        assert got[0] is (await take(await cached.subscribe(PODS, got[0].revision - 1), 1))[0]
    run(etcd, body)


def test_resume_within_window_is_exact_then_live(etcd):
    async def body(cached):
        await cached.cache_for(PODS)
        a = await cached.create(PODS + "ns1/a", pod("a"))
        await cached.create(PODS + "ns1/b", pod("b"))
        await cached.guaranteed_update(PODS + "ns1/a", lambda o: {**o, "spec": {"v": 2}})
        await cached.delete(PODS + "ns1/b")
        sub = await cached.subscribe(PODS, int(a["metadata"]["resourceVersion"]))
        assert isinstance(sub, Subscriber)
        replay = await take(sub, 3)
        await cached.create(PODS + "ns1/c", pod("c"))
        live = await take(sub, 1)
        events = replay + live
        assert [(e.type, e.object["metadata"]["name"]) for e in events] == \
            [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
        assert events[1].prev_object["spec"] == {} and events[1].object["spec"] == {"v": 2}
        assert events[2].object["metadata"]["labels"] == {"n": "b"}
        assert events[2].object["metadata"]["resourceVersion"] == str(events[2].revision)
    run(etcd, body)


def test_revision_from_before_the_cache_falls_back_to_etcd(etcd):
    async def body(cached):
        a = await cached.create(PODS + "ns1/a", pod("a"))
        await cached.create(PODS + "ns1/b", pod("b"))
        await cached.cache_for(PODS)  # the cache starts after both writes
        events = cached.watch(PODS, int(a["metadata"]["resourceVersion"]))
        try:
            first = await take(events, 1)
            await cached.create(PODS + "ns1/c", pod("c"))
            assert names(first + await take(events, 1)) == ["b", "c"]
        finally:
            await events.aclose()
    run(etcd, body)


def test_a_watch_from_before_the_cache_leaves_its_etcd_watch_once_caught_up(etcd):
    """A watcher that failed over to a restarted apiserver resumes from before that apiserver's
    caches began: its own etcd watch catches it up, then it goes on from the cache, so etcd
    is back to one watcher for the resource, and no event is missed or repeated."""
    async def body(cached):
        a = await cached.create(PODS + "ns1/a", pod("a"))
        await cached.create(PODS + "ns1/b", pod("b"))
        cache = await cached.cache_for(PODS)  # the cache starts after both writes
        assert await cache.wait_until(await cached.current_revision(), 10)   # its etcd watch is up
        watchers = etcd_watchers(etcd)
        events = cached.watch(PODS, int(a["metadata"]["resourceVersion"]))
        try:
            seen = await take(events, 1)
            await cached.create(PODS + "ns1/c", pod("c"))
            seen += await take(events, 1)
            async def etcd_back_to_the_cache_watch():
                return etcd_watchers(etcd) == watchers
            await until(etcd_back_to_the_cache_watch, timeout=10)
            await cached.create(PODS + "ns1/d", pod("d"))
            assert names(seen + await take(events, 1)) == ["b", "c", "d"]
        finally:
            await events.aclose()
    run(etcd, body, progress_interval=0.2)


def etcd_watchers(etcd) -> int:
    """etcd's count of its watchers (etcd_debugging_mvcc_watcher_total on /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{etcd.client_port}/metrics", timeout=5).text
    return int(float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("etcd_debugging_mvcc_watcher_total "))))


def test_a_warmed_cache_resumes_a_watch_from_before_its_first_watcher_after_compaction(etcd):
    """What an apiserver started before a failover gives the watchers moving to it: the
    history since it started, even once etcd compacted it (a cache made at the first
    watch would have none, and etcd's is gone: 410)."""
    async def body(cached):
        await cached.warm([PODS, "/not-a-registry-key/"])
        listed = await cached.create(PODS + "ns1/a", pod("a"))
        await cached.create(PODS + "ns1/b", pod("b"))
        await cached.create(PODS + "ns1/c", pod("c"))
        cache = await cached.cache_for(PODS)
        assert await cache.wait_until(await cached.current_revision(), 10)
        await cached.compact(await cached.current_revision())
        resumed = cached.watch(PODS, int(listed["metadata"]["resourceVersion"]))
        try:
            assert names(await take(resumed, 2)) == ["b", "c"]
        finally:
            await resumed.aclose()
    run(etcd, body)


def test_warming_with_etcd_gone_leaves_the_cache_to_its_first_watch(tmp_path):
    own = EtcdProcess(data_dir=tmp_path / "etcd", log_path=tmp_path / "etcd.log").start()

    async def body(cached):
        own.stop()
        try:
            await asyncio.wait_for(cached.warm([PODS]), 60)   # logged, not raised
        finally:
            own.start()
        created = await create_once_etcd_answers(cached, PODS + "ns1/a", pod("a"))
        events = cached.watch(PODS, int(created["metadata"]["resourceVersion"]) - 1)
        try:
            assert names(await take(events, 1, timeout=30)) == ["a"]
        finally:
            await events.aclose()
    try:
        run(own, body)
    finally:
        own.stop()


async def create_once_etcd_answers(cached, key: str, obj: dict, timeout: float = 30.0) -> dict:
    """``cached.create`` retried while etcd is unavailable (a restarted etcd: gRPC reconnects
    with a backoff), as an apiserver's clients retry a 503."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await cached.create(key, obj)
        except StorageUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_revision_out_of_window_and_compacted_is_gone(etcd):
    async def body(cached):
        a = await cached.create(PODS + "ns1/a", pod("a"))
        await cached.cache_for(PODS)
        for i in range(10):
            await cached.create(f"{PODS}ns1/p{i}", pod(f"p{i}"))
        cache = await cached.cache_for(PODS)
        # a cache's etcd watch is immune to compaction once it has caught up
        assert await cache.wait_until(await cached.current_revision(), 10)
        await cached.compact(await cached.current_revision())
        with pytest.raises(Compacted):
            await take(cached.watch(PODS, int(a["metadata"]["resourceVersion"])), 1)
        # still inside the window (3 newest events): served from the cache
        assert await cached.cache_for(PODS) is cache
        recent = await cached.subscribe(PODS, cache.revision - 2)
        assert names(await take(recent, 2)) == ["p8", "p9"]
    run(etcd, body, window=3)


def test_slow_subscriber_is_closed_and_memory_stays_bounded(etcd):
    async def body(cached):
        slow = await cached.subscribe(PODS, 0, buffer=10)
        fast = await cached.subscribe(PODS, 0, buffer=10)
        for i in range(40):
            await cached.create(f"{PODS}ns1/p{i}", pod(f"p{i}"))
            await take(fast, 1)
        with pytest.raises(WatcherTooSlow) as err:
            await take(slow, 1)
        assert isinstance(err.value, Compacted)
        with pytest.raises(StopAsyncIteration):
            await anext(slow)
        # the cache keeps the newest 20 events and no more: with etcd compacted, a watch from
        # 20 events back is served (from the cache), one from 21 back is gone
        cache = await cached.cache_for(PODS)
        newest = await cached.current_revision()
        assert await cache.wait_until(newest, 10)
        await cached.compact(newest)
        kept = await cached.subscribe(PODS, newest - 20)
        try:
            assert names(await take(kept, 20)) == [f"p{i}" for i in range(20, 40)]
        finally:
            await kept.aclose()
        older = await cached.subscribe(PODS, newest - 21)
        with pytest.raises(Compacted):
            await take(older, 1)
    run(etcd, body, window=20)


def test_replay_of_a_long_backlog_is_not_too_slow(etcd):
    async def body(cached):
        await cached.cache_for(PODS)
        start = await cached.current_revision()
        for i in range(30):
            await cached.create(f"{PODS}ns1/p{i}", pod(f"p{i}"))
        sub = await cached.subscribe(PODS, start, buffer=5)
        assert len(await take(sub, 30)) == 30
    run(etcd, body)


def test_namespace_and_single_object_filtering(etcd):
    async def body(cached):
        ns1 = await cached.subscribe(PODS + "ns1/", 0)
        one = await cached.subscribe(PODS + "ns1/b", 0)
        await cached.create(PODS + "ns10/a", pod("a", "ns10"))
        await cached.create(PODS + "ns1/a", pod("a"))
        await cached.create(PODS + "ns1/b", pod("b"))
        await cached.create("/registry/services/ns1/a", {"metadata": {"name": "svc"}})
        await cached.create(PODS + "ns1/c", pod("c"))
        got = await take(ns1, 3)
        assert [e.key for e in got] == [PODS + "ns1/a", PODS + "ns1/b", PODS + "ns1/c"]
        assert [e.key for e in await take(one, 1)] == [PODS + "ns1/b"]
    run(etcd, body)


def test_revision_zero_is_from_now_and_bookmarks_advance(etcd):
    async def body(cached):
        await cached.create(PODS + "ns1/old", pod("old"))
        sub = await cached.subscribe(PODS, 0)
        before = sub.bookmark_revision()
        created = await cached.create(PODS + "ns1/new", pod("new"))
        assert names(await take(sub, 1)) == ["new"]
        assert sub.bookmark_revision() == int(created["metadata"]["resourceVersion"]) > before
    run(etcd, body)


def test_batches_and_wire_line_encoded_once(etcd):
    async def body(cached):
        first = await cached.subscribe(PODS, 0)
        second = await cached.subscribe(PODS, 0)
        for i in range(5):
            await cached.create(f"{PODS}ns1/p{i}", pod(f"p{i}"))
        await take(second, 5)
        got = []
        while len(got) < 5:
            got += await asyncio.wait_for(first.batch(), 10)
        line = wire_line(got[0])
        assert line.startswith(b'{"type":"ADDED","object":{') and line.endswith(b"}\n")
        assert wire_line(got[0]) is line
    run(etcd, body)


def test_close_ends_subscribers_and_leaves_no_tasks(etcd):
    async def main():
        cached = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port))
        sub = await cached.subscribe(PODS, 0)
        waiting = asyncio.ensure_future(take(sub, 1))
        await asyncio.sleep(0.1)
        await cached.close()
        with pytest.raises(StopAsyncIteration):
            await waiting
        assert await no_tasks_left()
    asyncio.run(main())


def test_etcd_outage_fails_watchers_and_the_cache_is_remade(tmp_path):
    etcd = EtcdProcess(data_dir=tmp_path / "etcd", log_path=tmp_path / "etcd.log").start()

    async def main():
        cached = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port))
        try:
            sub = await cached.subscribe(PODS, 0)
            await cached.create(PODS + "ns1/a", pod("a"))
            assert names(await take(sub, 1)) == ["a"]
            await asyncio.to_thread(etcd.stop)
            with pytest.raises(StorageUnavailable):
                await take(sub, 1)
            with pytest.raises(StorageUnavailable):
                await cached.get(PODS + "ns1/a")
            await asyncio.to_thread(etcd.start)
            for _ in range(100):  # the channel reconnects within the gRPC back-off
                try:
                    await cached.get(PODS + "ns1/a")
                    break
                except StorageUnavailable:
                    await asyncio.sleep(0.1)
            again = await cached.subscribe(PODS, 0)
            await cached.create(PODS + "ns1/b", pod("b"))
            assert names(await take(again, 1)) == ["b"]
        finally:
            await cached.close()
    try:
        asyncio.run(main())
    finally:
        etcd.stop()


def test_cache_revision_and_bookmarks_advance_without_events_of_the_resource(etcd):
    async def body(cached):
        sub = await cached.subscribe(PODS, 0)
        other = await cached.create("/registry/configmaps/ns1/c", {"metadata": {"name": "c"}})
        elsewhere = int(other["metadata"]["resourceVersion"])
        cache = await cached.cache_for(PODS)
        assert await cache.wait_until(elsewhere, 10)
        assert sub.bookmark_revision() >= elsewhere
        watch = cached.watch(PODS, 0)
        pending = asyncio.ensure_future(take(watch, 1))
        created = await cached.create(PODS + "ns1/a", pod("a"))
        assert names(await take(sub, 1)) == ["a"]
        assert sub.bookmark_revision() >= int(created["metadata"]["resourceVersion"])
        assert names(await pending) == ["a"]
        later = await cached.create("/registry/configmaps/ns1/d", {"metadata": {"name": "d"}})
        assert await cache.wait_until(int(later["metadata"]["resourceVersion"]), 10)
        assert watch.bookmark_revision() >= int(later["metadata"]["resourceVersion"])
        await watch.aclose()
    run(etcd, body, progress_interval=0.05)


async def seen_by_cache(cached, key: str, revision: str, timeout: float = 5.0):
    """The cache's suggestion for ``key`` once it has reached ``revision``."""
    cache = await cached.cache_for(key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (cache.suggestion(key) or (b"", 0))[1] != int(revision):
        assert loop.time() < deadline, "the cache never saw the write"
        await asyncio.sleep(0.01)
    return cache.suggestion(key)


def test_a_stale_suggestion_never_overwrites_or_misjudges_the_newest_state(etcd):
    """An update tried on the cache's (stale) state is decided again on the stored one."""
    async def body(cached):
        key = PODS + "ns1/a"
        await cached.cache_for(PODS)
        first = await cached.create(key, pod("a"))
        stale = await seen_by_cache(cached, key, first["metadata"]["resourceVersion"])
        newest = await cached.storage.guaranteed_update(key, lambda o: {**o, "spec": {"v": 2}})
        store = cached.storage

        labelled = await store.guaranteed_update(
            key, lambda o: {**o, "metadata": {**o["metadata"], "labels": {"x": "y"}}}, None, stale)
        assert labelled["spec"] == {"v": 2} and labelled["metadata"]["labels"] == {"x": "y"}

        def needs_v2(o):
            if o["spec"].get("v") != 2:
                raise ValueError("judged on the old state")
            return {**o, "spec": {"v": 3}}
        assert (await store.guaranteed_update(key, needs_v2, None, stale))["spec"] == {"v": 3}

        current = await store.get(key)
        unchanged = await store.guaranteed_update(key, lambda o: o, None, stale)
        assert unchanged == current and unchanged["metadata"]["resourceVersion"] != newest["metadata"]["resourceVersion"]

        from pkube.apiserver.storage.interface import NotFound, Preconditions
        rv = current["metadata"]["resourceVersion"]
        kept = await store.guaranteed_update(key, lambda o: {**o, "spec": {"v": 4}}, Preconditions(resource_version=rv),
                                             stale)
        assert kept["spec"] == {"v": 4}
        await store.delete(key)
        with pytest.raises(NotFound):
            await store.guaranteed_update(key, lambda o: {**o, "spec": {"v": 5}}, None, stale)
    run(etcd, body)


def test_concurrent_updates_through_the_cache_lose_nothing(etcd):
    async def body(cached):
        key = PODS + "ns1/counter"
        await cached.cache_for(PODS)
        await cached.create(key, {**pod("counter"), "spec": {"n": 0}})

        async def increment(_):
            await cached.guaranteed_update(key, lambda o: {**o, "spec": {"n": o["spec"]["n"] + 1}})
        for _ in range(3):
            await asyncio.gather(*(increment(i) for i in range(20)))
        assert (await cached.get(key))["spec"]["n"] == 60
    run(etcd, body)
