"""The REST client, informer, leader election and event recorder against the real apiserver."""

import asyncio

import pytest

from pkube.client.aio import AsyncApiClient
from pkube.client.clock import FakeClock
from pkube.client.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound, Unavailable
from pkube.client.events import EventRecorder
from pkube.client.informer import Informer
from pkube.client.kubeconfig import ClientConfig
from pkube.client.leaderelection import LeaderElectionConfig, LeaderElector
from pkube.client.resources import CONFIGMAPS, EVENTS, LEASES, NODES, PODS
from pkube.client.rest import ApiClient
from pkube.client.store import index_pods_by_node
from pkube.cluster.etcd import free_port


def configmap(name, labels=None, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data or {"k": "v"}}


def pod(name, node=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def api(apiserver):
    with ApiClient(ClientConfig(apiserver.url)) as client:
        yield client


def test_crud_and_typed_errors(api):
    created = api.create(CONFIGMAPS, configmap("a"))
    assert created["metadata"]["namespace"] == "default" and created["metadata"]["uid"]
    with pytest.raises(AlreadyExists):
        api.create(CONFIGMAPS, configmap("a"))
    assert api.get(CONFIGMAPS, "a")["data"] == {"k": "v"}
    with pytest.raises(NotFound):
        api.get(CONFIGMAPS, "missing")
    created["data"] = {"k": "v2"}
    replaced = api.replace(CONFIGMAPS, created)
    created["data"] = {"k": "stale"}
    with pytest.raises(Conflict):
        api.replace(CONFIGMAPS, created)
    assert replaced["data"] == {"k": "v2"}
    with pytest.raises(Invalid):
        api.create(CONFIGMAPS, configmap("Not_A_Name"))


def test_patch_kinds(api):
    api.create(CONFIGMAPS, configmap("p", labels={"a": "1"}))
    assert api.patch(CONFIGMAPS, "p", {"data": {"x": "1"}})["data"] == {"k": "v", "x": "1"}
    patched = api.patch(CONFIGMAPS, "p", [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                        patch_type="json")
    assert patched["metadata"]["labels"] == {"a": "1", "b": "2"}
    strategic = api.patch(CONFIGMAPS, "p", {"metadata": {"labels": {"c": "3"}}}, patch_type="strategic")
    assert strategic["metadata"]["labels"] == {"a": "1", "b": "2", "c": "3"}


def test_list_with_selectors_and_paging(api):
    for i in range(7):
        api.create(CONFIGMAPS, configmap(f"cm-{i}", labels={"parity": "even" if i % 2 == 0 else "odd"}))
    odd = api.list(CONFIGMAPS, "default", label_selector="parity=odd")
    assert sorted(i["metadata"]["name"] for i in odd["items"]) == ["cm-1", "cm-3", "cm-5"]
    first = api.list(CONFIGMAPS, "default", limit=3)
    assert len(first["items"]) == 3 and first["metadata"].get("continue")
    everything = api.list_all(CONFIGMAPS, "default", page_size=3)
    assert sorted(i["metadata"]["name"] for i in everything["items"]) == [f"cm-{i}" for i in range(7)]
    named = api.list(CONFIGMAPS, None, field_selector="metadata.name=cm-4")
    assert [i["metadata"]["name"] for i in named["items"]] == ["cm-4"]


def test_delete_with_preconditions(api):
    obj = api.create(CONFIGMAPS, configmap("d"))
    with pytest.raises(Conflict):
        api.delete(CONFIGMAPS, "d", preconditions={"uid": "not-the-uid"})
    api.delete(CONFIGMAPS, "d", preconditions={"uid": obj["metadata"]["uid"]}, grace_period_seconds=0,
               propagation_policy="Background")
    with pytest.raises(NotFound):
        api.get(CONFIGMAPS, "d")


def test_bind_sets_the_node(api):
    api.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    created = api.create(PODS, pod("web"))
    api.bind(created, "node-1")
    assert api.get(PODS, "web")["spec"]["nodeName"] == "node-1"
    with pytest.raises(Conflict):
        api.bind(created, "node-1")


def test_sync_watch_from_a_revision_and_gone_when_compacted(api, apiserver):
    first = api.create(CONFIGMAPS, configmap("w1"))
    api.create(CONFIGMAPS, configmap("w2"))
    events = api.watch(CONFIGMAPS, "default", resource_version=first["metadata"]["resourceVersion"],
                       allow_bookmarks=False)
    kind, obj = next(events)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "w2")
    events.close()
    latest = api.create(CONFIGMAPS, configmap("w3"))["metadata"]["resourceVersion"]
    apiserver.run(apiserver.storage.compact(int(latest)))
    with pytest.raises(Gone):
        next(api.watch(CONFIGMAPS, "default", resource_version=first["metadata"]["resourceVersion"]))


def test_async_client_verbs_errors_and_watch_of_long_lines(apiserver):
    """Every verb, the ApiError of each failure, and watch lines longer than aiohttp's 64 KiB line limit."""
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                   "data": {"blob": "x" * 200_000}}
            rv = (await client.list(CONFIGMAPS, "default"))["metadata"]["resourceVersion"]
            created = await client.create(CONFIGMAPS, big)
            with pytest.raises(AlreadyExists):
                await client.create(CONFIGMAPS, big)
            with pytest.raises(NotFound):
                await client.get(CONFIGMAPS, "missing")
            stale = dict(created, metadata={**created["metadata"], "resourceVersion": "1"})
            with pytest.raises(Conflict):
                await client.replace(CONFIGMAPS, stale)
            await client.patch(CONFIGMAPS, "big", {"metadata": {"labels": {"a": "b"}}})
            await client.delete(CONFIGMAPS, "big")
            events = []
            async for kind, obj in client.watch(CONFIGMAPS, "default", rv, timeout_seconds=1):
                events.append((kind, obj["metadata"].get("name"), len(obj.get("data", {}).get("blob", ""))))
                if kind == "DELETED":
                    break
            assert [e for e in events if e[0] != "BOOKMARK"] == [("ADDED", "big", 200_000), ("MODIFIED", "big", 200_000),
                                                                 ("DELETED", "big", 200_000)]
            assert len((await client.list_all(CONFIGMAPS, "default", page_size=1))["items"]) == 0
        async with AsyncApiClient(ClientConfig(f"http://127.0.0.1:{free_port()}")) as nobody:
            with pytest.raises(Unavailable):
                await nobody.get(CONFIGMAPS, "x")
    asyncio.run(main())


def run_async(apiserver, scenario):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            await asyncio.wait_for(scenario(client), 30)
    asyncio.run(main())


async def until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_informer_lists_watches_and_indexes(apiserver):
    async def scenario(client):
        await client.create(PODS, pod("before", node="n1"))
        informer = Informer(client, PODS, indexers={"node": index_pods_by_node})
        seen = []
        informer.add_handlers(lambda o: seen.append(("add", o["metadata"]["name"])),
                              lambda a, b: seen.append(("update", b["metadata"]["name"])),
                              lambda o: seen.append(("delete", o["metadata"]["name"])))
        task = asyncio.ensure_future(informer.run())
        try:
            await informer.wait_synced()
            assert seen == [("add", "before")]
            await client.create(PODS, pod("after", node="n1"))
            await client.patch(PODS, "before", {"metadata": {"labels": {"x": "y"}}})
            await client.delete(PODS, "after", grace_period_seconds=0)
            await until(lambda: len(seen) >= 4)
            assert seen[1:4] == [("add", "after"), ("update", "before"), ("delete", "after")]
            assert [p["metadata"]["name"] for p in informer.store.by_index("node", "n1")] == ["before"]
            assert informer.store.get("default/before")["metadata"]["labels"] == {"x": "y"}
        finally:
            task.cancel()
    run_async(apiserver, scenario)


def test_informer_relists_after_gone(apiserver):
    async def scenario(client):
        informer = Informer(client, CONFIGMAPS, namespace="default")
        await client.create(CONFIGMAPS, configmap("x"))
        await informer.relist()
        old_rv = informer.resource_version
        await client.create(CONFIGMAPS, configmap("y"))
        latest = (await client.create(CONFIGMAPS, configmap("z")))["metadata"]["resourceVersion"]
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            apiserver.storage.compact(int(latest)), apiserver.loop))
        with pytest.raises(Gone):
            await informer.watch_once(old_rv)
        task = asyncio.ensure_future(informer.run())   # lists from scratch
        try:
            await until(lambda: len(informer.store) == 3)
        finally:
            task.cancel()
    run_async(apiserver, scenario)


def test_leader_election_on_a_real_lease(apiserver):
    async def scenario(client):
        clock = FakeClock()
        cfg = lambda who: LeaderElectionConfig("default", "sched", who)  # noqa: E731
        noop = lambda: asyncio.sleep(0)                                 # noqa: E731
        a, b = LeaderElector(client, cfg("a"), noop, clock=clock), LeaderElector(client, cfg("b"), noop, clock=clock)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        clock.advance(15)
        assert await b.try_acquire_or_renew()
        assert not await a.try_acquire_or_renew()
        lease = await client.get(LEASES, "sched", "default")
        assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("b", 1)
    run_async(apiserver, scenario)


def test_events_are_created_and_aggregated(apiserver):
    async def scenario(client):
        target = await client.create(PODS, pod("ev"))
        target["kind"] = "Pod"
        recorder = EventRecorder(client, "test-component")
        for _ in range(3):
            await recorder.event(target, "Warning", "FailedScheduling", "0/1 nodes are available")
        events = (await client.list(EVENTS, "default"))["items"]
        assert len(events) == 1
        assert (events[0]["count"], events[0]["involvedObject"]["name"], events[0]["source"]["component"]) == \
            (3, "ev", "test-component")
    run_async(apiserver, scenario)
