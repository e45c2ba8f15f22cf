"""A node that stops renewing its Lease: Unknown, tainted, its pods evicted and replaced elsewhere
(hollow nodes, the scheduler, and the ReplicaSet + node lifecycle controllers on the real apiserver)."""

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import NODES, PODS, REPLICASETS
from pkube.cluster.hollow import HollowConfig, HollowNodes, node_names
from pkube.controllers.manager import ControllerManager
from pkube.controllers.nodelifecycle import UNREACHABLE
from pkube.scheduler.scheduler import Scheduler
from tests.helpers.waiting import until

REPLICAS = 6


def replicaset():
    labels = {"app": "survivor"}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "survivor"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                                           "resources": {"requests": {"cpu": "100m"}}}]}}}}


def ready_status(node):
    return next((c["status"] for c in node["status"].get("conditions") or [] if c["type"] == "Ready"), None)


def is_running_ready(pod):
    return pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp") and \
        any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


async def survivors(client):
    return [p for p in (await client.list(PODS, "default", label_selector="app=survivor"))["items"]]


def test_silent_node_loses_its_pods_to_the_others_and_recovers(apiserver):
    async def scenario(client, hollow):
        await client.create(REPLICASETS, replicaset())

        async def all_running():
            pods = await survivors(client)
            return pods if len([p for p in pods if is_running_ready(p)]) == REPLICAS else None
        pods = await until(all_running)
        victim = pods[0]["spec"]["nodeName"]
        doomed = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
        hollow.stop_renewing(victim)

        async def tainted():
            node = await client.get(NODES, victim)
            keys = [t["key"] for t in node["spec"].get("taints") or []]
            return node if ready_status(node) == "Unknown" and UNREACHABLE in keys else None
        await until(tainted)

        async def replaced():
            pods = await survivors(client)
            live = [p for p in pods if is_running_ready(p)]
            evicted = {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}
            if len(live) == REPLICAS and doomed <= evicted:
                return live
            return None
        live = await until(replaced)
        assert all(p["spec"]["nodeName"] != victim for p in live)
        assert not doomed & {p["metadata"]["name"] for p in live}

        hollow.resume_renewing(victim)

        async def recovered():
            node = await client.get(NODES, victim)
            names = {p["metadata"]["name"] for p in await survivors(client)}
            untainted = UNREACHABLE not in [t["key"] for t in node["spec"].get("taints") or []]
            return ready_status(node) == "True" and untainted and not doomed & names
        await until(recovered)

    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            hollow = HollowNodes(client, node_names(3, "life-"), HollowConfig(renew_interval=0.3, cpu="4"))
            manager = ControllerManager(client, ["replicaset", "nodelifecycle", "nodeipam"],
                                        node_monitor_grace_period=3.0, node_monitor_period=0.3,
                                        pod_eviction_timeout=1.0)
            tasks = [asyncio.ensure_future(hollow.run())]
            try:
                await asyncio.wait_for(hollow.wait_registered(), 30)
                tasks += [asyncio.ensure_future(manager.run()), asyncio.ensure_future(Scheduler(client).run())]
                await asyncio.wait_for(scenario(client, hollow), 90)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())
