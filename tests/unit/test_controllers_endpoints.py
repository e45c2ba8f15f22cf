"""Endpoints and EndpointSlice computations: selection, readiness, named ports, slice planning."""

import asyncio

from pkube.client.clock import FakeClock
from pkube.client.fake import FakeApi
from pkube.client.resources import ENDPOINTS
from pkube.controllers.base import ControllerContext
from pkube.controllers.endpoints import (ServicePodIndex, desired_endpoints, desired_subsets,
                                   resolve_target_port)
from pkube.controllers.endpointslice import (CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
                                       SliceTracker, plan_slices, slice_endpoint)
from pkube.controllers import endpoints as endpoints_module


def service(name="web", selector=None, ports=None, **spec):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"} if selector is None else selector,
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http",
                                                                "protocol": "TCP"}],
                     **spec}}


def pod(name, ip="10.0.0.1", ready=True, labels=None, http_port=8080, deleting=False, phase="Running",
        namespace="default"):
    ports = [{"name": "http", "containerPort": http_port, "protocol": "TCP"}] if http_port else []
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x", "ports": ports}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def ips(addresses):
    return [a["ip"] for a in addresses]


def test_ready_and_not_ready_addresses_with_named_ports_resolved_per_pod():
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False), pod("c", "10.0.0.3", http_port=9090),
            pod("other", "10.0.0.4", labels={"app": "db"}), pod("noip", None), pod("done", "10.0.0.5", phase="Succeeded"),
            pod("bye", "10.0.0.6", deleting=True), pod("noport", "10.0.0.7", http_port=None),
            pod("elsewhere", "10.0.0.8", namespace="prod")]
    subsets = desired_subsets(service(), pods)
    by_port = {s["ports"][0]["port"]: s for s in subsets}
    assert set(by_port) == {8080, 9090}
    assert ips(by_port[8080]["addresses"]) == ["10.0.0.1"]
    assert ips(by_port[8080]["notReadyAddresses"]) == ["10.0.0.2"]
    assert ips(by_port[9090]["addresses"]) == ["10.0.0.3"]
    assert by_port[8080]["ports"] == [{"port": 8080, "protocol": "TCP", "name": "http"}]
    address = by_port[8080]["addresses"][0]
    assert address["nodeName"] == "n1" and address["targetRef"] == {"kind": "Pod", "namespace": "default",
                                                                    "name": "a", "uid": "uid-a"}


def test_numeric_target_port_and_publish_not_ready():
    svc = service(ports=[{"port": 80, "targetPort": 8000, "protocol": "TCP"}], publishNotReadyAddresses=True)
    subsets = desired_subsets(svc, [pod("a", "10.0.0.1", ready=False)])
    assert subsets == [{"addresses": subsets[0]["addresses"], "ports": [{"port": 8000, "protocol": "TCP"}]}]
    assert resolve_target_port({"port": 80}, pod("a")) == 80
    assert resolve_target_port({"port": 80, "targetPort": "http", "protocol": "UDP"}, pod("a")) is None


def test_endpoints_written_only_when_they_change():
    svc = service()
    first = desired_endpoints(svc, [pod("a")], None)
    assert first["metadata"]["labels"] == {"team": "a"} and first["metadata"]["name"] == "web"
    stored = {**first, "metadata": {**first["metadata"], "resourceVersion": "7"}}
    assert desired_endpoints(svc, [pod("a")], stored) is None
    changed = desired_endpoints(svc, [pod("a"), pod("b", "10.0.0.2")], stored)
    assert changed["metadata"]["resourceVersion"] == "7"
    assert ips(changed["subsets"][0]["addresses"]) == ["10.0.0.1", "10.0.0.2"]
    headless = desired_endpoints(service(clusterIP="None"), [pod("a")], None)
    assert headless["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_pod_events_enqueue_the_services_that_select_it():
    class Informer:
        def __init__(self, objs):
            self.store = self
            self.objs = objs

        def by_index(self, index, value):
            return [o for o in self.objs if o["metadata"]["namespace"] == value]
    queued = []
    index = ServicePodIndex(Informer([service("web"), service("db", selector={"app": "db"}),
                                      service("manual", selector={})]), queued.append)
    index.pod_added(pod("a"))
    assert queued == ["default/web"]
    moved = pod("a", labels={"app": "db"})
    index.pod_updated(pod("a"), moved)
    assert sorted(queued[1:]) == ["default/db", "default/web"]
    queued.clear()
    index.pod_updated(pod("a"), pod("a"))                    # nothing relevant changed
    assert queued == []


def test_slice_endpoint_conditions():
    svc = service()
    assert slice_endpoint(svc, pod("a"))["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert slice_endpoint(svc, pod("b", ready=False))["conditions"] == {"ready": False, "serving": False,
                                                                          "terminating": False}
    assert slice_endpoint(svc, pod("c", deleting=True))["conditions"] == {"ready": False, "serving": True,
                                                                            "terminating": True}


def stored(slice_, name):
    out = dict(slice_)
    out["metadata"] = {**slice_["metadata"], "name": name}
    del out["metadata"]["generateName"]
    return out


def test_plan_creates_labelled_slices_then_only_what_changed():
    svc = service()
    pods = [pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(5)]
    plan = plan_slices(svc, pods, [], max_endpoints=2)
    assert [len(s["endpoints"]) for s in plan.create] == [2, 2, 1] and not plan.update and not plan.delete
    first = plan.create[0]
    assert first["metadata"]["labels"] == {"team": "a", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert first["addressType"] == "IPv4" and first["ports"] == [{"port": 8080, "protocol": "TCP", "name": "http"}]
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Service"
    existing = [stored(s, f"web-{i}") for i, s in enumerate(plan.create)]
    assert plan_slices(svc, pods, existing, max_endpoints=2).empty()

    pods[0] = pod("p0", "10.0.0.1", ready=False)             # one change: one slice rewritten
    plan = plan_slices(svc, pods, existing, max_endpoints=2)
    assert [s["metadata"]["name"] for s in plan.update] == ["web-0"] and not plan.create and not plan.delete

    plan = plan_slices(svc, pods[2:], existing, max_endpoints=2)
    assert plan.delete == ["web-0"] and not plan.create


def test_no_endpoints_keeps_one_placeholder_and_port_sets_split_slices():
    svc = service()
    plan = plan_slices(svc, [], [])
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []
    placeholder = stored(plan.create[0], "web-x")
    assert plan_slices(svc, [], [placeholder]).empty()
    plan = plan_slices(svc, [pod("a"), pod("b", "10.0.0.2", http_port=9090)], [placeholder])
    assert sorted(s["ports"][0]["port"] for s in plan.create) == [8080, 9090]
    assert plan.delete == ["web-x"]


def test_tracker_waits_for_the_cache_then_expires():
    clock = FakeClock()
    tracker = SliceTracker(clock, timeout=5)
    tracker.wrote("ns/s", ["s-1"], ["s-0"])
    assert tracker.stale("ns/s", {"s-0"})
    assert tracker.stale("ns/s", {"s-0", "s-1"})
    assert not tracker.stale("ns/s", {"s-1"})
    tracker.wrote("ns/s", ["s-2"], [])
    clock.advance(6)
    assert not tracker.stale("ns/s", set())


def test_endpoints_controller_reconcile_over_fake_api():
    async def scenario():
        api = FakeApi()
        ctx = ControllerContext.create(api, FakeClock())
        controller = endpoints_module.new_controller(ctx)
        controller.services.store.put(service())
        controller.services.store.put(service("manual", selector={}))
        controller.pods.store.put(pod("a"))
        await controller.reconcile("default/web")
        await controller.reconcile("default/manual")
        created = await api.get(ENDPOINTS, "web", "default")
        assert ips(created["subsets"][0]["addresses"]) == ["10.0.0.1"]
        assert [w[2] for w in api.writes] == ["web"]              # the selector-less service: untouched
        controller.endpoints.store.put(created)
        await controller.reconcile("default/web")
        assert len(api.writes) == 1
    asyncio.run(scenario())




def test_unnamed_service_port_is_named_empty_in_slices_but_omitted_in_endpoints():
    """kubectl describe dereferences an EndpointSlice port's name: it must be there, even ""."""
    svc = service(ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP"}])
    slice_ports = plan_slices(svc, [pod("p0")], []).create[0]["ports"]
    assert slice_ports == [{"port": 8080, "protocol": "TCP", "name": ""}]
    subsets = desired_subsets(svc, [pod("p0")])
    assert subsets[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
