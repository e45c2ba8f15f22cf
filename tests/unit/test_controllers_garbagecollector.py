"""Garbage collector decisions on cached objects, with a recording client (no apiserver)."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.errors import error_for_status, status_for
from pkube.client.resources import CONFIGMAPS, PODS, REPLICASETS
from pkube.controllers.base import ControllerContext
from pkube.controllers.garbagecollector import GarbageCollector
from pkube.controllers.manager import CONTROLLERS, choose


class RecordingClient:
    """Answers GET from ``live`` (404 otherwise) and records deletes and patches."""

    def __init__(self, live=()):
        self.live = {(r.plural, name): obj for r, name, obj in live}
        self.calls = []

    async def get(self, resource, name, namespace=None, subresource=None):
        if (resource.plural, name) not in self.live:
            raise error_for_status(status_for(404, "NotFound", name))
        return self.live[(resource.plural, name)]

    async def list_all(self, resource, namespace=None, label_selector=None, field_selector=None, page_size=500):
        return {"items": [o for (plural, _), o in self.live.items() if plural == resource.plural
                          and namespace in (None, o["metadata"].get("namespace"))]}

    async def delete(self, resource, name, namespace=None, propagation_policy=None, grace_period_seconds=None,
                     preconditions=None):
        self.calls.append(("delete", resource.plural, name, propagation_policy))
        return {}

    async def patch(self, resource, name, patch, namespace=None, patch_type="merge", subresource=None):
        self.calls.append(("patch", resource.plural, name, patch["metadata"]))
        return {}


def obj(name, uid, owners=(), deleting=False, finalizers=(), kind="ReplicaSet", api="apps/v1"):
    meta = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "7",
            "ownerReferences": [{"apiVersion": a, "kind": k, "name": n, "uid": u, "blockOwnerDeletion": b}
                                for a, k, n, u, b in owners]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def collector(client, *objects):
    gc = GarbageCollector(ControllerContext.create(client, clock=FakeClock()))
    for resource, o in objects:
        gc.informers[resource.plural].store.put(o)
    return gc


def test_dependent_of_a_vanished_owner_is_deleted_in_the_background():
    client = RecordingClient()
    pod = obj("p", "p1", [("apps/v1", "ReplicaSet", "rs", "gone", True)], kind="Pod", api="v1")
    gc = collector(client, (PODS, pod))
    asyncio.run(gc.reconcile("pods|ns/p"))
    assert client.calls == [("delete", "pods", "p", "Background")]


def test_owner_recreated_under_the_same_name_does_not_save_the_dependent():
    client = RecordingClient(live=[(REPLICASETS, "rs", obj("rs", "new-uid"))])
    pod = obj("p", "p1", [("apps/v1", "ReplicaSet", "rs", "old-uid", True)], kind="Pod", api="v1")
    asyncio.run(collector(client, (PODS, pod)).reconcile("pods|ns/p"))
    assert client.calls == [("delete", "pods", "p", "Background")]


def test_live_owner_keeps_the_dependent_and_dead_references_are_trimmed():
    client = RecordingClient()
    owner = obj("rs", "r1")
    pod = obj("p", "p1", [("apps/v1", "ReplicaSet", "rs", "r1", True),
                          ("apps/v1", "ReplicaSet", "old", "gone", False)], kind="Pod", api="v1")
    asyncio.run(collector(client, (REPLICASETS, owner), (PODS, pod)).reconcile("pods|ns/p"))
    (verb, plural, name, meta), = client.calls
    assert (verb, name) == ("patch", "p") and [r["uid"] for r in meta["ownerReferences"]] == ["r1"]


def test_foreground_owner_deletes_dependents_and_waits_for_blocking_ones():
    client = RecordingClient()
    owner = obj("rs", "r1", deleting=True, finalizers=["foregroundDeletion"])
    pod = obj("p", "p1", [("apps/v1", "ReplicaSet", "rs", "r1", True)], kind="Pod", api="v1")
    gc = collector(client, (REPLICASETS, owner), (PODS, pod))
    asyncio.run(gc.reconcile("replicasets|ns/rs"))
    assert client.calls == [("delete", "pods", "p", "Background")]     # finalizer stays: p blocks
    gc.informers["pods"].store.remove("ns/p")
    client.calls.clear()
    asyncio.run(gc.reconcile("replicasets|ns/rs"))
    assert client.calls == [("patch", "replicasets", "rs", {"finalizers": None, "resourceVersion": "7"})]


def test_orphan_finalizer_strips_references_then_goes():
    owner = obj("cm", "c1", deleting=True, finalizers=["orphan"], kind="ConfigMap", api="v1")
    dep = obj("d", "d1", [("v1", "ConfigMap", "cm", "c1", False)], kind="ConfigMap", api="v1")
    client = RecordingClient([(CONFIGMAPS, "d", dep), (CONFIGMAPS, "cm", owner)])
    asyncio.run(collector(client, (CONFIGMAPS, owner)).reconcile("configmaps|ns/cm"))
    assert [c[:3] for c in client.calls] == [("patch", "configmaps", "d"), ("patch", "configmaps", "cm")]
    assert client.calls[0][3]["ownerReferences"] is None


def test_manager_refuses_unknown_controllers_and_runs_all_core_ones_by_default():
    with pytest.raises(ValueError, match="unknown controllers"):
        choose(["replicaset", "nope"])
    assert set(CONTROLLERS) == set(choose(None))
    assert list(choose(["deployment"])) == ["deployment"]


def test_command_line_options_reach_the_controllers_and_bad_names_exit_2(capsys):
    from pkube.controllers.__main__ import controller_options, main, parse_args
    options = controller_options(parse_args(["--cluster-cidr", "10.9.0.0/16", "--pod-eviction-timeout", "5"]))
    assert options == {"replicaset_burst": 500, "cluster_cidr": "10.9.0.0/16", "pod_eviction_timeout": 5.0}
    assert main(["--controllers", "replicaset,nope"]) == 2
    assert "unknown controllers ['nope']" in capsys.readouterr().err
