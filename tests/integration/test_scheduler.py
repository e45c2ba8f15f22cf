"""The scheduler against the real apiserver: binding, no overcommit, unschedulable reporting, retry."""

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import EVENTS, NODES, PODS
from pkube.scheduler.scheduler import Scheduler
from tests.helpers.waiting import until


def node(name, cpu="2", memory="4Gi", labels=None, taints=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name, cpu="1", node_selector=None, owner_uid=None, scheduler_name=None):
    spec = {"containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    meta = {"name": name}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                    "uid": owner_uid, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def with_scheduler(apiserver, scenario):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            scheduler = Scheduler(client)
            task = asyncio.ensure_future(scheduler.run())
            try:
                await asyncio.wait_for(scenario(client, scheduler), 60)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


async def placements(client):
    pods = (await client.list(PODS, "default"))["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}


def test_burst_is_bound_without_overcommit_then_waits_for_a_node(apiserver):
    async def scenario(client, scheduler):
        for name in ("a", "b", "c"):
            await client.create(NODES, node(name))
        for i in range(8):
            await client.create(PODS, pod(f"p{i}", owner_uid="rs-uid"))

        message = "0/3 nodes are available: 3 Insufficient cpu."

        async def settled():
            """Two pods wait, reported with the final message (early attempts may have seen fewer nodes)."""
            placed = await placements(client)
            unbound = [n for n, where in placed.items() if not where]
            if len(unbound) != 2:
                return None
            reported = [await client.get(PODS, n) for n in unbound]
            for p in reported:
                condition = next((c for c in (p.get("status") or {}).get("conditions") or []
                                  if c["type"] == "PodScheduled"), {})
                if (condition.get("status"), condition.get("reason"), condition.get("message")) != \
                        ("False", "Unschedulable", message):
                    return None
            return placed, reported
        placed, unbound = await until(settled)
        per_node = {}
        for where in placed.values():
            if where:
                per_node[where] = per_node.get(where, 0) + 1
        assert per_node == {"a": 2, "b": 2, "c": 2}          # 2 cpu each, 1 cpu per pod, spread evenly

        async def events_written():
            events = (await client.list(EVENTS, "default"))["items"]
            failed = any(e["reason"] == "FailedScheduling" and e["type"] == "Warning"
                         and e["message"] == message for e in events)
            return failed and any(e["reason"] == "Scheduled" for e in events)
        await until(events_written)

        await client.create(NODES, node("d"))                 # a new node: the two waiting pods fit now
        final = await until(lambda: _all_bound(client))
        assert sorted(n for n, where in final.items() if where == "d") == \
            sorted(p["metadata"]["name"] for p in unbound)
    with_scheduler(apiserver, scenario)


async def _all_bound(client):
    placed = await placements(client)
    return placed if all(placed.values()) else None


def test_selector_and_taints_steer_pods_and_other_schedulers_pods_are_left_alone(apiserver):
    async def scenario(client, scheduler):
        await client.create(NODES, node("plain", cpu="8"))
        await client.create(NODES, node("ssd", labels={"disk": "ssd"}))
        await client.create(NODES, node("tainted", cpu="64", taints=[{"key": "dedicated", "value": "db",
                                                                       "effect": "NoSchedule"}]))
        await client.create(PODS, pod("wants-ssd", node_selector={"disk": "ssd"}))
        await client.create(PODS, pod("anywhere", cpu="500m"))
        await client.create(PODS, pod("not-mine", scheduler_name="other-scheduler"))

        async def two_bound():
            placed = await placements(client)
            return placed if placed["wants-ssd"] and placed["anywhere"] else None
        placed = await until(two_bound)
        assert placed["wants-ssd"] == "ssd" and placed["anywhere"] == "plain"
        # a pod of ours created after "not-mine" is bound: the scheduler has seen "not-mine" too
        await client.create(PODS, pod("after-not-mine", cpu="100m"))

        async def bound_after():
            return (await placements(client)).get("after-not-mine")
        await until(bound_after)
        assert (await client.get(PODS, "not-mine"))["spec"].get("nodeName") is None
    with_scheduler(apiserver, scenario)
