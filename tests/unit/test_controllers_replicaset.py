"""ReplicaSet controller logic without an apiserver: batches, deletion order, status, expectations."""

import asyncio
import datetime as dt

from pkube.client.clock import FakeClock
from pkube.client.errors import error_for_status, status_for
from pkube.client.fake import FakeApi
from pkube.client.resources import REPLICASETS
from pkube.controllers.base import ControllerContext
from pkube.controllers.podcontrol import slow_start
from pkube.controllers.replicaset import ReplicaSetController, pods_to_delete, replica_set_status

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def pod(name, node=None, phase="Running", ready=None, created="2026-01-01T10:00:00Z", labels=None):
    conditions = [] if ready is None else [{"type": "Ready", "status": "True", "lastTransitionTime": ready}]
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": labels or {"app": "x"}},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conditions}}


def test_slow_start_batches_double_and_stop_at_the_first_failure():
    sizes, calls = [], []

    async def make():
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("quota")
    created, error = asyncio.run(slow_start(10, make))
    assert len(calls) == 7            # batches 1, 2, 4: the batch of 4 had the failure
    assert created == 6 and str(error) == "quota"


def test_scale_down_removes_unscheduled_then_pending_then_unready_then_newest():
    pods = [pod("ready-old", "n1", ready="2026-01-01T10:00:00Z", created="2026-01-01T09:00:00Z"),
            pod("ready-new", "n1", ready="2026-01-01T11:00:00Z", created="2026-01-01T11:00:00Z"),
            pod("unready", "n1"),
            pod("pending", "n1", phase="Pending"),
            pod("unscheduled", None, phase="Pending")]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, 5)]
    assert order == ["unscheduled", "pending", "unready", "ready-new", "ready-old"]


def test_status_counts_ready_available_and_labelled_pods():
    rs = {"metadata": {"generation": 3},
          "spec": {"minReadySeconds": 60, "template": {"metadata": {"labels": {"app": "x", "tier": "web"}}}}}
    pods = [pod("a", "n", ready="2026-01-01T11:00:00Z", labels={"app": "x", "tier": "web"}),
            pod("b", "n", ready="2026-01-01T11:59:30Z"),
            pod("c", "n")]
    status, wait = replica_set_status(rs, pods, NOW)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                      "availableReplicas": 1, "observedGeneration": 3}
    assert wait == 30


class RecordingPodControl:
    def __init__(self):
        self.created, self.deleted = [], []

    async def create_pod(self, namespace, template, owner):
        self.created.append((namespace, owner["metadata"]["uid"]))
        return {}

    async def delete_pod(self, namespace, name):
        self.deleted.append(name)


def test_creates_are_not_repeated_before_the_informer_sees_them():
    ctx = ControllerContext.create(FakeApi(), clock=FakeClock())
    control = RecordingPodControl()
    controller = ReplicaSetController(ctx, pod_control=control)
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}},
                   "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}}
    ctx.client.objects[(REPLICASETS.plural, "ns", "web")] = rs
    controller.rs_informer.store.put(rs)

    async def twice():
        await controller.reconcile("ns/web")
        await controller.reconcile("ns/web")    # the pod informer has seen nothing yet
    asyncio.run(twice())
    assert control.created == [("ns", "u1")] * 3


def test_pod_deletion_cost_orders_ready_pods():
    cheap = pod("cheap", "n1", ready="2026-01-01T10:00:00Z")
    cheap["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "-5"}
    dear = pod("dear", "n1", ready="2026-01-01T11:00:00Z")
    dear["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "100"}
    plain = pod("plain", "n1", ready="2026-01-01T11:30:00Z")
    assert [p["metadata"]["name"] for p in pods_to_delete([dear, plain, cheap], 3)] == ["cheap", "plain", "dear"]


class RefusingPodControl(RecordingPodControl):
    async def create_pod(self, namespace, template, owner):
        raise error_for_status(status_for(403, "Forbidden", 'pods "web-x" is forbidden: exceeded quota'))


class StatusRecordingApi(FakeApi):
    def __init__(self):
        super().__init__()
        self.statuses = []

    async def patch(self, resource, name, patch, namespace=None, patch_type="merge", subresource=None):
        self.statuses.append(patch["status"])
        return {}


def test_refused_creates_show_as_replica_failure_and_are_retried():
    api = StatusRecordingApi()
    ctx = ControllerContext.create(api, clock=FakeClock())
    controller = ReplicaSetController(ctx, pod_control=RefusingPodControl())
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                   "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}}
    controller.rs_informer.store.put(rs)
    controller.queue.add("ns/web")
    asyncio.run(controller.process_ready())
    (status,) = api.statuses
    (cond,) = status["conditions"]
    assert (cond["type"], cond["reason"]) == ("ReplicaFailure", "FailedCreate")
    assert "exceeded quota" in cond["message"]
    assert controller.queue.num_requeues("ns/web") == 1


def test_pods_deleted_but_still_active_in_the_cache_are_not_counted_available():
    """Scale 3 → 1 deletes two pods; a second reconcile before the informer sees the
    deletions must not report them available again (a Deployment would then scale its
    old ReplicaSets down too far)."""
    api = StatusRecordingApi()
    ctx = ControllerContext.create(api, clock=FakeClock())
    control = RecordingPodControl()
    controller = ReplicaSetController(ctx, pod_control=control)
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 2},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                   "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}}
    controller.rs_informer.store.put(rs)
    for name in ("a", "b", "c"):
        ready = pod(name, "n1", ready="2026-01-01T10:00:00Z")
        ready["metadata"]["uid"] = f"uid-{name}"
        ready["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                                 "uid": "u1", "controller": True}]
        controller.pod_informer.store.put(ready)

    async def twice():
        await controller.reconcile("ns/web")
        await controller.reconcile("ns/web")    # the pod informer has not seen the deletions
    asyncio.run(twice())
    assert len(control.deleted) == 2
    assert [s["availableReplicas"] for s in api.statuses] == [1, 1]
