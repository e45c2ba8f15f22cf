"""Writes tried on the state an apiserver knows without a read (issue 15): the state it last
wrote (``RecentWrites``) or watched. Two stores (two apiservers) share one real etcd, so each
one's remembered state goes stale under the other's writes; what the first then writes must
be what a fresh read would have given."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest

from pkube.apiserver.storage.cacher import CachedStorage
from pkube.apiserver.storage.etcd import EtcdStorage, RecentWrites
from pkube.apiserver.storage.interface import Conflict, NotFound, Preconditions
from tests.integration.conftest import start_apiserver, stop_apiserver

KEY = "/registry/pods/ns1/p"


def pod(uid: str = "uid-1", **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns1", "uid": uid, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def two_stores(etcd, body):
    """``body(a, b)`` on two stores over the same etcd, each behind its own watch cache."""
    async def main():
        a = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port))
        b = CachedStorage(await EtcdStorage.connect("127.0.0.1", etcd.client_port))
        try:
            return await body(a, b)
        finally:
            await a.close()
            await b.close()
    return asyncio.run(main())


def etcd_ranges(etcd) -> float:
    """Range calls etcd has answered (its own /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{etcd.client_port}/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("grpc_server_handled_total") and re.search(r'grpc_method="Range"', line))


def labelled(key: str, value: str):
    def fn(obj):
        obj["metadata"].setdefault("labels", {})[key] = value
        return obj
    return fn


def test_recent_writes_keep_the_newest_and_forget_the_least_recently_written():
    recent = RecentWrites(capacity=2)
    recent.remember("a", b"a1", 5)
    recent.remember("b", b"b1", 6)
    recent.remember("a", b"a2", 7)          # a is now the most recently written
    recent.remember("c", b"c1", 8)          # b goes
    assert recent.newest("b", None) is None
    assert recent.newest("a", None) == (b"a2", 7)
    assert recent.newest("a", (b"watched", 9)) == (b"watched", 9)
    assert recent.newest("a", (b"watched", 6)) == (b"a2", 7)
    recent.forget("a")
    assert recent.newest("a", None) is None


def test_a_write_after_the_stores_own_write_reads_nothing(etcd):
    async def body(a, b):
        await a.create(KEY, pod())
        before = etcd_ranges(etcd)
        await a.guaranteed_update(KEY, labelled("x", "1"))
        await a.guaranteed_update(KEY, labelled("y", "2"))
        await a.delete(KEY, Preconditions(uid="uid-1"))
        return etcd_ranges(etcd) - before
    assert two_stores(etcd, body) == 0


def test_an_update_on_a_state_another_apiserver_changed_keeps_its_change(etcd):
    async def body(a, b):
        await a.create(KEY, pod())
        await b.guaranteed_update(KEY, labelled("from-b", "1"))
        await a.guaranteed_update(KEY, labelled("from-a", "1"))
        return (await b.get(KEY))["metadata"]["labels"]
    assert two_stores(etcd, body) == {"from-b": "1", "from-a": "1"}


def test_a_conditional_delete_judges_the_stored_object_not_the_remembered_one(etcd):
    async def body(a, b):
        await a.create(KEY, pod(uid="uid-1"))
        await b.delete(KEY)
        await b.create(KEY, pod(uid="uid-2"))          # same name, another object
        with pytest.raises(Conflict):
            await a.delete(KEY, Preconditions(uid="uid-1"))
        survivor = await b.get(KEY)
        removed = await a.delete(KEY, Preconditions(uid="uid-2"))
        with pytest.raises(NotFound):
            await b.get(KEY)
        return survivor["metadata"]["uid"], removed["metadata"]["uid"]
    assert two_stores(etcd, body) == ("uid-2", "uid-2")


def test_a_delete_decided_on_a_stale_state_is_decided_again(etcd):
    """Apiserver A last wrote the pod with a finalizer; apiserver B then removed it. A DELETE
    through A must remove the pod at once, as a fresh read would decide, instead of only
    marking it for the finalizer that is gone."""
    import httpx
    first, a = start_apiserver(etcd)
    try:
        second, b = start_apiserver(etcd)
        try:
            body = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "finalizers": ["example.com/hold"]},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            path = "/api/v1/namespaces/default/pods"
            with httpx.Client(base_url=a.url) as via_a, httpx.Client(base_url=b.url) as via_b:
                assert via_a.post(path, json=body).status_code == 201
                patch = via_b.patch(f"{path}/p", json={"metadata": {"finalizers": None}},
                                    headers={"Content-Type": "application/merge-patch+json"})
                assert patch.status_code == 200, patch.text
                deleted = via_a.delete(f"{path}/p")
                assert deleted.status_code == 200, deleted.text
                assert via_b.get(f"{path}/p").status_code == 404
        finally:
            stop_apiserver(second)
    finally:
        stop_apiserver(first)
