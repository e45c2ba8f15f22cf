"""Store indexes and the informer's list/watch/relist/resync contract, over a fake lister-watcher."""

import asyncio

from pkube.client.clock import FakeClock
from pkube.client.errors import Gone, status_for
from pkube.client.informer import Informer
from pkube.client.resources import PODS
from pkube.client.store import Store, index_by_namespace, index_pods_by_node


def pod(name, node=None, ns="default", rv="1"):
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
            "spec": {"nodeName": node} if node else {}}


def test_store_indexes_follow_updates_and_removals():
    store = Store({"node": index_pods_by_node, "ns": index_by_namespace})
    store.put(pod("a", "n1"))
    store.put(pod("b", "n1", ns="other"))
    assert {p["metadata"]["name"] for p in store.by_index("node", "n1")} == {"a", "b"}
    store.put(pod("a", "n2"))
    assert [p["metadata"]["name"] for p in store.by_index("node", "n1")] == ["b"]
    assert [p["metadata"]["name"] for p in store.by_index("ns", "other")] == ["b"]
    store.remove("other/b")
    assert store.by_index("node", "n1") == [] and store.get("default/a")["spec"]["nodeName"] == "n2"


class FakeListWatch:
    """Serves one list, then watch events pushed by the test; ``gone()`` ends a watch with 410."""

    def __init__(self, items, rv="10"):
        self.items, self.rv = items, rv
        self.events: asyncio.Queue = asyncio.Queue()
        self.watched_from = []

    async def list_all(self, resource, namespace, label_selector, field_selector):
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": self.rv},
                "items": [dict(i) for i in self.items]}

    async def watch(self, resource, namespace, rv, label_selector, field_selector, timeout):
        self.watched_from.append(rv)
        while True:
            event = await self.events.get()
            if event == "gone":
                raise Gone(status_for(410, "Expired", "too old"))
            if event == "end":
                return
            yield event


class Recorder:
    def __init__(self, informer):
        self.seen = []
        informer.add_handlers(lambda o: self.seen.append(("add", o["metadata"]["name"])),
                              lambda old, new: self.seen.append(("update", new["metadata"]["name"])),
                              lambda o: self.seen.append(("delete", o["metadata"]["name"])))


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


def run_informer(test):
    async def scenario():
        clock = FakeClock()
        lw = FakeListWatch([pod("a", "n1"), pod("b")])
        informer = Informer(lw, PODS, clock=clock, resync_period=30,
                            indexers={"node": index_pods_by_node})
        rec = Recorder(informer)
        task = asyncio.ensure_future(informer.run())
        try:
            await asyncio.wait_for(informer.wait_synced(), 5)
            await test(informer, lw, rec, clock)
        finally:
            task.cancel()
    asyncio.run(scenario())


def test_list_then_watch_from_the_list_revision():
    async def test(informer, lw, rec, clock):
        assert informer.has_synced() and sorted(rec.seen) == [("add", "a"), ("add", "b")]
        await settle()
        assert lw.watched_from == ["10"]
        lw.events.put_nowait(("ADDED", pod("c", "n1", rv="11")))
        lw.events.put_nowait(("MODIFIED", pod("b", "n2", rv="12")))
        lw.events.put_nowait(("DELETED", pod("a", "n1", rv="13")))
        await settle()
        assert rec.seen[2:] == [("add", "c"), ("update", "b"), ("delete", "a")]
        assert [p["metadata"]["name"] for p in informer.store.by_index("node", "n1")] == ["c"]
        lw.events.put_nowait("end")
        await settle()
        assert lw.watched_from == ["10", "13"]
    run_informer(test)


def test_gone_relists_and_notifies_only_the_differences():
    async def test(informer, lw, rec, clock):
        await settle()
        lw.items = [pod("b", "n3", rv="20"), pod("d", rv="21")]
        lw.rv = "30"
        rec.seen.clear()
        lw.events.put_nowait("gone")
        await settle()
        assert sorted(rec.seen) == [("add", "d"), ("delete", "a"), ("update", "b")]
        assert sorted(informer.store.keys()) == ["default/b", "default/d"]
        assert lw.watched_from == ["10", "30"]
        assert informer.store.get("default/b")["kind"] == "Pod"
    run_informer(test)


def test_periodic_resync_revisits_every_object():
    async def test(informer, lw, rec, clock):
        await settle()
        rec.seen.clear()
        clock.advance(29)
        await settle()
        assert rec.seen == []
        clock.advance(1)
        await settle()
        assert sorted(rec.seen) == [("update", "a"), ("update", "b")]
    run_informer(test)
