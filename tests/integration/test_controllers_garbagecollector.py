"""Garbage collector against the real apiserver: background, foreground and orphan deletion."""

import asyncio

from pkube.client.errors import NotFound
from pkube.client.informer import Informer
from pkube.client.resources import CONFIGMAPS, DEPLOYMENTS, PODS, REPLICASETS
from tests.integration.test_controllers_deployment import deployment, rollout_done
from tests.integration.test_controllers_replicaset import replica_set
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers

ALL = ["replicaset", "deployment", "garbagecollector"]


async def count(client, resource):
    return len((await client.list(resource, "default"))["items"])


async def gone(client, resource, name):
    try:
        await client.get(resource, name, "default")
    except NotFound:
        return True
    return False


def test_foreground_delete_removes_pods_and_replicasets_before_the_deployment(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("fg", 3), "default")
        await until(rollout_done(client, "fg"))
        deletions = []
        watchers = []
        for resource in (PODS, REPLICASETS, DEPLOYMENTS):
            informer = Informer(client, resource, namespace="default")
            informer.add_handlers(on_delete=lambda obj, r=resource: deletions.append(r.plural))
            watchers.append(asyncio.ensure_future(informer.run()))
            await informer.wait_synced()
        try:
            await client.delete(DEPLOYMENTS, "fg", "default", propagation_policy="Foreground")
            waiting = await client.get(DEPLOYMENTS, "fg", "default")
            assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
            await until(lambda: gone(client, DEPLOYMENTS, "fg"))
            await until(lambda: _has(deletions, "deployments"))
        finally:
            for task in watchers:
                task.cancel()
        assert deletions.count("pods") == 3 and deletions.count("replicasets") == 1
        assert deletions[-1] == "deployments"
        assert await count(client, PODS) == 0 and await count(client, REPLICASETS) == 0
    with_controllers(apiserver, scenario, ALL)


async def _has(items, value):
    return value in items


async def gc_caught_up(client) -> None:
    """Create a ConfigMap whose owner never existed and wait until the garbage collector has
    deleted it: the changes made before it have then been processed too."""
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "0000-never-existed"}
    await client.create(CONFIGMAPS, {"metadata": {"name": "gc-marker", "ownerReferences": [ghost]}}, "default")
    await until(lambda: gone(client, CONFIGMAPS, "gc-marker"))


def test_background_delete_removes_dependents_after_the_owner(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("bg", 2), "default")
        await until(rollout_done(client, "bg"))
        await client.delete(DEPLOYMENTS, "bg", "default")
        assert await gone(client, DEPLOYMENTS, "bg")

        async def all_gone():
            return await count(client, PODS) == 0 and await count(client, REPLICASETS) == 0
        await until(all_gone)
    with_controllers(apiserver, scenario, ALL)


def test_orphan_delete_keeps_pods_without_their_owner_reference(apiserver):
    async def scenario(client):
        await client.create(REPLICASETS, replica_set("keep", 2), "default")

        async def two_pods():
            return await count(client, PODS) == 2
        await until(two_pods)
        await client.delete(REPLICASETS, "keep", "default", propagation_policy="Orphan")
        await until(lambda: gone(client, REPLICASETS, "keep"))
        await gc_caught_up(client)   # anything the collector would do to the pods is done
        pods = (await client.list(PODS, "default"))["items"]
        assert len(pods) == 2
        assert all(not p["metadata"].get("ownerReferences") for p in pods)
    with_controllers(apiserver, scenario, ALL)


def test_object_whose_owner_never_existed_is_collected_but_one_with_a_live_owner_stays(apiserver):
    async def scenario(client):
        owner = await client.create(CONFIGMAPS, {"metadata": {"name": "owner"}}, "default")
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
        ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "0000-gone"}
        await client.create(CONFIGMAPS, {"metadata": {"name": "kept", "ownerReferences": [ref]}}, "default")
        await client.create(CONFIGMAPS, {"metadata": {"name": "half", "ownerReferences": [ref, ghost]}},
                            "default")
        await client.create(CONFIGMAPS, {"metadata": {"name": "orphan", "ownerReferences": [ghost]}}, "default")
        await until(lambda: gone(client, CONFIGMAPS, "orphan"))

        async def trimmed():
            half = await client.get(CONFIGMAPS, "half", "default")
            return [r["name"] for r in half["metadata"]["ownerReferences"]] == ["owner"]
        await until(trimmed)
        assert not await gone(client, CONFIGMAPS, "kept")
    with_controllers(apiserver, scenario, ["garbagecollector"], kubelet=False)
