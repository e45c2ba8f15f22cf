"""Node lifecycle: taints from Ready, toleration arithmetic, and the controller on a fake clock."""

import asyncio
import datetime as dt

from pkube.api.tolerations import tolerates
from pkube.client.clock import FakeClock
from pkube.client.errors import error_for_status, status_for
from pkube.client.fake import FakeApi
from pkube.client.resources import LEASES, NODES, PODS
from pkube.controllers.base import ControllerContext
from pkube.controllers.nodelifecycle import (NOT_READY, UNREACHABLE, NodeLifecycleController, eviction_delay,
                                       restored_conditions, taints_for, unknown_conditions)

WALL = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class DeletingFakeApi(FakeApi):
    async def delete(self, resource, name, namespace=None, preconditions=None, **_):
        key = self._key(resource, namespace, name)
        if key not in self.objects:
            raise error_for_status(status_for(404, "NotFound", f"{name!r} not found"))
        self.writes.append(("delete", resource.plural, name, None))
        return self.objects.pop(key)


def node(name="n1", ready="True", taints=None):
    conditions = [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                   "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
                  {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"taints": taints} if taints else {}, "status": {"conditions": conditions}}


def lease(name="n1", renew="2026-01-01T00:00:00.000000Z"):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"renewTime": renew}}


def pod(name, node_name="n1", tolerations=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x"}],
                     "tolerations": tolerations or []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def unreachable_for(seconds):
    return [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}]


def taint(key, seconds_ago=0):
    return {"key": key, "effect": "NoExecute",
            "timeAdded": (WALL - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_taints_follow_the_ready_status_and_keep_the_others():
    other = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    assert taints_for(node(taints=[other]), "True", WALL) is None
    unknown = taints_for(node(taints=[other]), "Unknown", WALL)
    assert unknown == [other, {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]
    swapped = taints_for(node(taints=unknown), "False", WALL)
    assert [t["key"] for t in swapped] == ["dedicated", NOT_READY]
    assert taints_for(node(taints=unknown), "True", WALL) == [other]
    assert taints_for(node(taints=unknown), "Unknown", WALL) is None


def test_conditions_go_unknown_and_come_back():
    later = WALL + dt.timedelta(minutes=1)
    unknown = unknown_conditions(node(), later)
    assert {c["type"]: (c["status"], c["reason"]) for c in unknown} == {
        "Ready": ("Unknown", "NodeStatusUnknown"), "MemoryPressure": ("Unknown", "NodeStatusUnknown")}
    assert unknown[0]["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"       # when the kubelet last posted
    never = unknown_conditions({"metadata": {"name": "x"}}, later)
    assert never == [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                      "message": "Kubelet never posted node status.", "lastTransitionTime": "2026-01-01T00:01:00Z"}]
    restored = restored_conditions({"status": {"conditions": unknown}}, later)
    assert {c["type"]: c["status"] for c in restored} == {"Ready": "True", "MemoryPressure": "False"}


def test_tolerations_match_like_kubernetes():
    t = {"key": UNREACHABLE, "effect": "NoExecute"}
    assert tolerates({"operator": "Exists"}, t)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}, t)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, t)
    assert not tolerates({"key": NOT_READY, "operator": "Exists"}, t)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"})


def test_eviction_delay_from_toleration_seconds_and_time_added():
    taints = [taint(UNREACHABLE, seconds_ago=100)]
    assert eviction_delay(pod("p"), taints, WALL) == 0.0                            # not tolerated: now
    assert eviction_delay(pod("p", tolerations=unreachable_for(300)), taints, WALL) == 200
    assert eviction_delay(pod("p", tolerations=unreachable_for(300)), taints, WALL, cap=10) == -90
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    assert eviction_delay(pod("p", tolerations=forever), taints, WALL) is None
    assert eviction_delay(pod("p"), [{"key": "x", "effect": "NoSchedule"}], WALL) is None


class Harness:
    """The controller over FakeApi, with its caches refreshed from the fake's objects."""

    def __init__(self, grace=50, cap=None):
        self.api, self.clock = DeletingFakeApi(), FakeClock(wall_start=WALL)
        ctx = ControllerContext.create(self.api, self.clock)
        self.controller = NodeLifecycleController(ctx, grace_period=grace, monitor_period=5, eviction_cap=cap)

    async def add(self, resource, obj):
        await self.api.create(resource, obj)

    def sync(self):
        stores = {"nodes": self.controller.nodes.store, "leases": self.controller.leases.store,
                  "pods": self.controller.pods.store}
        for store in stores.values():
            for key in store.keys():
                store.remove(key)
        for (plural, _, _), obj in self.api.objects.items():
            stores[plural].put(obj)

    async def visit(self, seconds=0.0):
        self.clock.advance(seconds)
        self.sync()
        await self.controller.reconcile("n1")
        self.sync()

    def pods(self):
        return sorted(name for (plural, _, name) in self.api.objects if plural == "pods")


def test_silent_node_is_marked_tainted_and_evicted_then_restored():
    async def scenario():
        h = Harness(grace=50)
        await h.add(NODES, node())
        await h.add(LEASES, lease())
        await h.add(PODS, pod("plain"))
        await h.add(PODS, pod("patient", tolerations=unreachable_for(30)))
        await h.add(PODS, pod("forever", tolerations=[{"operator": "Exists"}]))
        await h.add(PODS, pod("elsewhere", node_name="n2"))
        await h.visit()
        await h.visit(49)
        n1 = await h.api.get(NODES, "n1")
        assert n1["status"]["conditions"][0]["status"] == "True" and not n1["spec"].get("taints")

        await h.visit(2)                                    # 51 s without a renewal
        n1 = await h.api.get(NODES, "n1")
        assert {c["type"]: c["status"] for c in n1["status"]["conditions"]} == {"Ready": "Unknown",
                                                                                  "MemoryPressure": "Unknown"}
        assert [t["key"] for t in n1["spec"]["taints"]] == [UNREACHABLE]
        assert h.pods() == ["elsewhere", "forever", "patient"]     # untolerated: evicted at once
        patient = await h.api.get(PODS, "patient", "default")
        assert patient["status"]["conditions"][0]["status"] == "False"   # marked not ready
        assert h.controller.queue.num_requeues("n1") == 0

        await h.visit(29)
        assert "patient" in h.pods()
        await h.visit(2)
        assert h.pods() == ["elsewhere", "forever"]

        await h.api.replace(LEASES, lease(renew="2026-01-01T00:01:40.000000Z"))
        await h.visit(1)
        n1 = await h.api.get(NODES, "n1")
        assert n1["status"]["conditions"][0]["status"] == "True" and not n1["spec"]["taints"]
        await h.visit(10)                                   # stays healthy: its own write is no silence
        assert (await h.api.get(NODES, "n1"))["status"]["conditions"][0]["status"] == "True"
    asyncio.run(scenario())


def test_eviction_cap_shortens_the_default_tolerations_and_not_ready_taint():
    async def scenario():
        h = Harness(grace=50, cap=5)
        await h.add(NODES, node(ready="False"))
        await h.add(LEASES, lease())
        await h.add(PODS, pod("defaulted", tolerations=[
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]))
        await h.visit()
        n1 = await h.api.get(NODES, "n1")
        assert [t["key"] for t in n1["spec"]["taints"]] == [NOT_READY]
        assert h.pods() == ["defaulted"]
        await h.visit(6)
        assert h.pods() == []
    asyncio.run(scenario())


def test_a_restarted_controller_does_not_revive_a_node_that_is_still_silent():
    async def scenario():
        h = Harness(grace=50)
        await h.add(NODES, node(ready="Unknown", taints=[taint(UNREACHABLE, seconds_ago=10)]))
        h.api.objects[("nodes", None, "n1")]["status"]["conditions"][0]["reason"] = "NodeStatusUnknown"  # by a
        # previous controller process; the Lease below is as stale as it was then
        await h.add(LEASES, lease())
        await h.visit()
        await h.visit(10)
        n1 = await h.api.get(NODES, "n1")
        assert n1["status"]["conditions"][0]["status"] == "Unknown"
        assert [t["key"] for t in n1["spec"]["taints"]] == [UNREACHABLE]
        assert [w[0] for w in h.api.writes].count("replace") == 0
    asyncio.run(scenario())
