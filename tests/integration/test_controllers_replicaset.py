"""ReplicaSet controller against the real apiserver: scale up and down, adopt, release, status."""

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import PODS, REPLICASETS
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers


def replica_set(name, replicas, labels=None, min_ready=0):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def orphan(name, labels):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def owned_pods(client, rs_name):
    rs = await client.get(REPLICASETS, rs_name, "default")
    pods = (await client.list(PODS, "default"))["items"]
    return [p for p in pods if any(r["uid"] == rs["metadata"]["uid"] and r.get("controller")
                                   for r in p["metadata"].get("ownerReferences") or [])
            and not p["metadata"].get("deletionTimestamp")]


def test_scale_up_and_down_with_status(apiserver):
    async def scenario(client):
        await client.create(REPLICASETS, replica_set("web", 5), "default")

        async def five_ready():
            rs = await client.get(REPLICASETS, "web", "default")
            status = rs.get("status") or {}
            return status.get("availableReplicas") == 5 and status.get("readyReplicas") == 5 and rs
        rs = await until(five_ready)
        assert rs["status"]["replicas"] == 5 and rs["status"]["fullyLabeledReplicas"] == 5
        assert rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
        pods = await owned_pods(client, "web")
        assert len(pods) == 5
        ref = pods[0]["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["controller"] and ref["blockOwnerDeletion"]
        assert all(p["metadata"]["name"].startswith("web-") for p in pods)

        await client.patch(REPLICASETS, "web", {"spec": {"replicas": 2}}, "default")

        async def two_left():
            rs = await client.get(REPLICASETS, "web", "default")
            return (rs["status"].get("replicas") == 2 and len(await owned_pods(client, "web")) == 2
                    and rs["status"]["observedGeneration"] == rs["metadata"]["generation"])
        await until(two_left)
    with_controllers(apiserver, scenario)


def test_adopts_matching_orphans_and_releases_relabelled_pods(apiserver):
    async def make_orphans():
        """Before the controllers start, so their pod cache holds them once synced (made after,
        the ReplicaSet's first sync could come before the pods' events and make three pods)."""
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            for i in range(2):
                await client.create(PODS, orphan(f"stray{i}", {"app": "db"}), "default")

    async def scenario(client):
        await client.create(REPLICASETS, replica_set("db", 3), "default")

        async def three_owned():
            pods = await owned_pods(client, "db")
            return len(pods) == 3 and pods
        pods = await until(three_owned)
        assert {"stray0", "stray1"} <= {p["metadata"]["name"] for p in pods}

        await client.patch(PODS, "stray0", {"metadata": {"labels": {"app": "other"}}}, "default")

        async def released_and_replaced():
            stray = await client.get(PODS, "stray0", "default")
            pods = await owned_pods(client, "db")
            return (not stray["metadata"].get("ownerReferences") and len(pods) == 3
                    and "stray0" not in {p["metadata"]["name"] for p in pods})
        await until(released_and_replaced)
    asyncio.run(make_orphans())
    with_controllers(apiserver, scenario)


def test_available_waits_for_min_ready_seconds(apiserver):
    async def scenario(client):
        await client.create(REPLICASETS, replica_set("slow", 2, min_ready=2), "default")

        async def ready_not_available():
            rs = await client.get(REPLICASETS, "slow", "default")
            s = rs.get("status") or {}
            return s.get("readyReplicas") == 2 and s
        status = await until(ready_not_available)
        assert status.get("availableReplicas", 0) < 2

        async def available():
            rs = await client.get(REPLICASETS, "slow", "default")
            return (rs.get("status") or {}).get("availableReplicas") == 2
        await until(available)
    with_controllers(apiserver, scenario)

