"""The store contract (pkube/apiserver/storage/interface.py) against a real etcd."""

from __future__ import annotations

import asyncio
import contextlib
import os

import aetcd
import pytest

from pkube.apiserver.storage.cacher import CachedStorage
from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.apiserver.storage.interface import (
    Compacted, Conflict, KeyExists, NotFound, Preconditions, StorageUnavailable,
)
from pkube.apiserver.storage.keys import BadStorageRequest
from pkube.apiserver.storage.transformer import AesGcmTransformer
from pkube.cluster.etcd import free_port

NS = "/registry/pods/ns1/"


def pod(name: str, ns: str = "ns1", **extra) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}, **extra}


@pytest.fixture(params=["etcd", "cached"])
def runner(request, etcd):
    """``runner(body, transformer=None)`` runs ``body(store)`` on a fresh
    EtcdStorage, then again (second param) on a CachedStorage over one: the
    watch cache must keep the same contract."""
    def run_body(body, transformer=None):
        if request.param == "etcd":
            return run(etcd, body, transformer)

        async def cached(store):
            wrapped = CachedStorage(store)
            try:
                return await body(wrapped)
            finally:
                await wrapped.close()
        return run(etcd, cached, transformer)
    return run_body


def run(etcd, body, transformer=None):
    """Run ``body(store)`` on a fresh EtcdStorage in a fresh event loop."""
    async def main():
        store = await EtcdStorage.connect("127.0.0.1", etcd.client_port, transformer)
        try:
            return await body(store)
        finally:
            await store.close()
    return asyncio.run(main())


async def raw_value(etcd, key: str) -> bytes:
    async with aetcd.Client(host="127.0.0.1", port=etcd.client_port) as client:
        got = await client.get(key.encode())
        return got.value


async def take(iterator, n: int, timeout: float = 10.0) -> list:
    async def collect():
        return [await anext(iterator) for _ in range(n)]
    return await asyncio.wait_for(collect(), timeout)


def test_create_get_and_create_twice(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        got = await store.get(NS + "a")
        assert got == created
        assert int(created["metadata"]["resourceVersion"]) == await store.current_revision()
        with pytest.raises(KeyExists):
            await store.create(NS + "a", pod("a"))
        with pytest.raises(NotFound):
            await store.get(NS + "missing")
    runner(body)


def test_resource_version_is_never_persisted(etcd, runner):
    async def body(store):
        obj = pod("a")
        obj["metadata"]["resourceVersion"] = "999"
        created = await store.create(NS + "a", obj)
        assert created["metadata"]["resourceVersion"] != "999"
        await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {"x": 1}})
        raw = await raw_value(etcd, NS + "a")
        assert b"resourceVersion" not in raw
        assert b'"spec":{"x":1}' in raw
    runner(body)


def test_guaranteed_update_applies_fn_and_bumps_version(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))

        def label(obj):
            obj["metadata"]["labels"] = {"app": "web"}
            return obj
        updated = await store.guaranteed_update(NS + "a", label)
        assert updated["metadata"]["labels"] == {"app": "web"}
        assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
        assert await store.get(NS + "a") == updated
    runner(body)


def test_guaranteed_update_without_change_writes_nothing(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        before = await store.current_revision()
        same = await store.guaranteed_update(NS + "a", lambda o: o)
        assert same == created
        assert await store.current_revision() == before
    runner(body)


def test_guaranteed_update_fn_error_aborts_and_fn_gets_private_copy(etcd, runner):
    async def body(store):
        await store.create(NS + "a", pod("a"))

        def refuse(obj):
            obj["spec"] = "garbage"
            raise RuntimeError("no")
        with pytest.raises(RuntimeError):
            await store.guaranteed_update(NS + "a", refuse)
        assert (await store.get(NS + "a"))["spec"] == pod("a")["spec"]
        with pytest.raises(NotFound):
            await store.guaranteed_update(NS + "missing", lambda o: o)
    runner(body)


def test_stale_update_is_a_conflict(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {"v": 2}})
        stale = {**created, "spec": {"v": 3}}
        with pytest.raises(Conflict) as err:
            await store.guaranteed_update(NS + "a", lambda current: stale)
        assert err.value.current["spec"] == {"v": 2}
        assert (await store.get(NS + "a"))["spec"] == {"v": 2}
    runner(body)


def test_fifty_concurrent_updates_all_land(etcd, runner):
    async def body(store):
        await store.create("/registry/configmaps/ns1/counter", {"metadata": {"name": "counter"},
                                                                "data": {"n": "0"}})

        def increment(obj):
            obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
            return obj
        await asyncio.gather(*(store.guaranteed_update("/registry/configmaps/ns1/counter", increment)
                               for _ in range(50)))
        assert (await store.get("/registry/configmaps/ns1/counter"))["data"]["n"] == "50"
    runner(body)


def test_delete_returns_last_state_at_delete_revision(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        deleted = await store.delete(NS + "a")
        assert deleted["spec"] == created["spec"]
        assert deleted["metadata"]["resourceVersion"] == str(await store.current_revision())
        with pytest.raises(NotFound):
            await store.get(NS + "a")
        with pytest.raises(NotFound):
            await store.delete(NS + "a")
    runner(body)


def test_delete_preconditions(etcd, runner):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        with pytest.raises(Conflict):
            await store.delete(NS + "a", Preconditions(uid="someone-else"))
        with pytest.raises(Conflict):
            await store.delete(NS + "a", Preconditions(resource_version="1"))
        assert await store.get(NS + "a") == created
        rv = created["metadata"]["resourceVersion"]
        deleted = await store.delete(NS + "a", Preconditions(uid="uid-a", resource_version=rv))
        assert deleted["metadata"]["name"] == "a"
        with pytest.raises(NotFound):
            await store.delete(NS + "a", Preconditions(uid="uid-a"))
    runner(body)


def test_update_preconditions(etcd, runner):
    async def body(store):
        await store.create(NS + "a", pod("a"))
        with pytest.raises(Conflict):
            await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {}},
                                          Preconditions(uid="other"))
        updated = await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {}},
                                                Preconditions(uid="uid-a"))
        assert updated["spec"] == {}
    runner(body)


def test_list_is_scoped_to_the_prefix(etcd, runner):
    async def body(store):
        await store.create(NS + "a", pod("a"))
        await store.create("/registry/pods/ns10/b", pod("b", "ns10"))
        await store.create("/registry/services/ns1/a", {"metadata": {"name": "a"}})
        page = await store.list(NS)
        assert [o["metadata"]["name"] for o in page.items] == ["a"]
        assert page.continue_token is None
        assert page.revision == await store.current_revision()
        everything = await store.list("/registry/pods/")
        assert [o["metadata"]["name"] for o in everything.items] == ["a", "b"]
    runner(body)


def test_list_at_an_older_revision(etcd, runner):
    async def body(store):
        await store.create(NS + "a", pod("a"))
        await store.create(NS + "b", pod("b"))
        then = await store.current_revision()
        await store.delete(NS + "a")
        await store.create(NS + "c", pod("c"))
        await store.guaranteed_update(NS + "b", lambda o: {**o, "spec": {"changed": True}})
        old = await store.list(NS, revision=then)
        assert old.revision == then
        assert [o["metadata"]["name"] for o in old.items] == ["a", "b"]
        assert old.items[1]["spec"] == pod("b")["spec"]
        with pytest.raises(BadStorageRequest):
            await store.list(NS, revision=then + 1000)
    runner(body)


def test_paging_reads_one_revision_across_later_writes(etcd, runner):
    async def body(store):
        for name in "abcde":
            await store.create(NS + name, pod(name))
        first = await store.list(NS, limit=2)
        assert [o["metadata"]["name"] for o in first.items] == ["a", "b"]
        assert first.remaining == 3 and first.continue_token
        await store.create(NS + "bb", pod("bb"))
        await store.delete(NS + "c")
        second = await store.list(NS, limit=2, continue_token=first.continue_token)
        assert [o["metadata"]["name"] for o in second.items] == ["c", "d"]
        assert second.revision == first.revision and second.remaining == 1
        third = await store.list(NS, limit=2, continue_token=second.continue_token)
        assert [o["metadata"]["name"] for o in third.items] == ["e"]
        assert third.continue_token is None
        with pytest.raises(BadStorageRequest):
            await store.list(NS, limit=2, continue_token="not-a-token")
    runner(body)


def test_list_raw_gives_the_same_objects_as_json_bytes(etcd, runner):
    import json

    async def body(store):
        for name in "abc":
            await store.create(NS + name, {"spec": {"template": {"metadata": {}}}, **pod(name)})
        await store.guaranteed_update(NS + "b", lambda o: {**o, "status": {"phase": "Running"}})
        decoded = await store.list(NS, limit=2)
        raw = await store.list_raw(NS, limit=2)
        assert [json.loads(item) for item in raw.items] == decoded.items
        assert (raw.revision, raw.continue_token, raw.remaining) == \
            (decoded.revision, decoded.continue_token, decoded.remaining)
        rest = await store.list_raw(NS, continue_token=raw.continue_token)
        assert json.loads(b"[" + b",".join(rest.items) + b"]") == \
            (await store.list(NS, continue_token=decoded.continue_token)).items
    runner(body, AesGcmTransformer(os.urandom(32), prefixes=("/registry/pods/",)))


def test_watch_resumes_exactly_from_a_revision(etcd, runner):
    async def body(store):
        a = await store.create(NS + "a", pod("a"))
        await store.create(NS + "b", pod("b"))
        await store.create("/registry/pods/other/x", pod("x", "other"))
        watch = store.watch(NS, int(a["metadata"]["resourceVersion"]))
        try:
            first = await take(watch, 1)
            await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {"v": 2}})
            deleted = await store.delete(NS + "a")
            rest = await take(watch, 2)
        finally:
            await watch.aclose()
        events = first + rest
        assert [(e.type, e.object["metadata"]["name"]) for e in events] == \
            [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]
        assert events[2].object["spec"] == {"v": 2}
        assert events[2].object["metadata"]["resourceVersion"] == deleted["metadata"]["resourceVersion"]
        assert [e.revision for e in events] == sorted(e.revision for e in events)
        assert all(e.object["metadata"]["resourceVersion"] == str(e.revision) for e in events)
    runner(body)


def test_watch_from_zero_starts_now(etcd, runner):
    async def body(store):
        await store.create(NS + "old", pod("old"))
        watch = store.watch(NS, 0)
        try:
            pending = asyncio.ensure_future(take(watch, 1, timeout=30))
            for i in range(300):  # the watch starts when etcd has it: write until one is seen
                await store.create(NS + f"new{i}", pod(f"new{i}"))
                done, _ = await asyncio.wait({pending}, timeout=0.1)
                if done:
                    break
            [event] = await pending
        finally:
            await watch.aclose()
        assert event.type == "ADDED" and event.object["metadata"]["name"].startswith("new")
    runner(body)


def test_compacted_revisions_answer_compacted(etcd, runner):
    async def body(store):
        first = await store.create(NS + "a", pod("a"))
        await store.guaranteed_update(NS + "a", lambda o: {**o, "spec": {}})
        now = await store.current_revision()
        await store.compact(now)
        await store.compact(now)  # idempotent
        old = int(first["metadata"]["resourceVersion"])
        watch = store.watch(NS, old - 1)
        with pytest.raises(Compacted) as err:
            await take(watch, 1)
        assert err.value.compact_revision == now
        with pytest.raises(Compacted) as err:
            await store.list(NS, revision=old)
        assert err.value.compact_revision == now
        assert len((await store.list(NS, revision=now)).items) == 1
    runner(body)


def test_cancelled_watch_leaves_no_task_or_stream(etcd):
    async def body(store):
        watch = store.watch(NS, 0)
        consumer = asyncio.ensure_future(take(watch, 1, timeout=30))
        await asyncio.sleep(0.2)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await watch.aclose()
        for _ in range(500):  # gRPC ends its own bookkeeping task shortly after the cancel
            if asyncio.all_tasks() == {asyncio.current_task()}:
                break
            await asyncio.sleep(0.01)
        assert asyncio.all_tasks() == {asyncio.current_task()}
    run(etcd, body)


def test_abandoned_watch_is_closed_when_dropped(etcd):
    async def body(store):
        created = await store.create(NS + "a", pod("a"))
        async for event in store.watch(NS, int(created["metadata"]["resourceVersion"]) - 1):
            assert event.key == NS + "a"
            break  # no aclose(): dropping the iterator must end its stream
        for _ in range(500):
            if asyncio.all_tasks() == {asyncio.current_task()}:
                break
            await asyncio.sleep(0.01)
        assert asyncio.all_tasks() == {asyncio.current_task()}
    run(etcd, body)


def test_secrets_are_encrypted_at_rest_and_read_back(etcd, runner):
    transformer = AesGcmTransformer(os.urandom(32))
    secret = {"metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}, "note": "hunter2"}

    async def body(store):
        await store.create("/registry/secrets/ns1/s", secret)
        await store.create("/registry/configmaps/ns1/c", {"metadata": {"name": "c"}, "note": "plain"})
        raw = await raw_value(etcd, "/registry/secrets/ns1/s")
        assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert b"hunter2" not in raw and b"aHVudGVyMg" not in raw
        assert b"plain" in await raw_value(etcd, "/registry/configmaps/ns1/c")
        got = await store.get("/registry/secrets/ns1/s")
        assert got["data"] == secret["data"] and got["note"] == "hunter2"
        updated = await store.guaranteed_update("/registry/secrets/ns1/s", lambda o: {**o, "note": "x"})
        listed = await store.list("/registry/secrets/")
        assert listed.items == [updated]
    runner(body, transformer)

    async def wrong_key(store):
        with pytest.raises(ValueError):
            await store.get("/registry/secrets/ns1/s")
    runner(wrong_key, AesGcmTransformer(os.urandom(32)))


def test_unreachable_etcd_is_unavailable():
    async def main():
        store = await EtcdStorage.connect("127.0.0.1", free_port())
        try:
            with pytest.raises(StorageUnavailable):
                await store.get("/registry/pods/ns1/a")
            with pytest.raises(StorageUnavailable):
                await store.create("/registry/pods/ns1/a", pod("a"))
        finally:
            await store.close()
    asyncio.run(main())


def test_several_endpoints_fail_over_to_a_live_member(etcd):
    async def main():
        dead = f"http://127.0.0.1:{free_port()}"
        store = await EtcdStorage.connect_endpoints([dead, etcd.endpoint])
        try:
            for _ in range(50):  # pick_first tries the dead address, then the live one
                try:
                    created = await store.create(NS + "a", pod("a"))
                    break
                except StorageUnavailable:
                    await asyncio.sleep(0.1)
            assert (await store.get(NS + "a")) == created
        finally:
            await store.close()
    asyncio.run(main())
    with pytest.raises(ValueError):
        asyncio.run(EtcdStorage.connect_endpoints(["ftp://x:1"]))
    with pytest.raises(ValueError):
        asyncio.run(EtcdStorage.connect_endpoints([]))
