"""Endpoints and EndpointSlices against the real apiserver, with pods run by hollow nodes
(whose IPs come from the podCIDRs the node IPAM controller assigns)."""

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.errors import NotFound
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import ENDPOINTS, ENDPOINTSLICES, NODES, PODS, SERVICES
from pkube.cluster.hollow import HollowConfig, HollowNodes, node_names
from pkube.controllers.manager import ControllerManager
from tests.helpers.waiting import until

SLICE_LABEL = "kubernetes.io/service-name"


def service(name, selector=None, target_port="http"):
    spec = {"ports": [{"name": "web", "port": 80, "targetPort": target_port}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def pod(name, node, port=8080, labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                                                       "ports": [{"name": "http", "containerPort": port}]}]}}


def with_cluster(apiserver, scenario):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            hollow = HollowNodes(client, node_names(2, "ep-"), HollowConfig())
            manager = ControllerManager(client, ["endpoints", "endpointslice", "nodeipam"])
            tasks = [asyncio.ensure_future(hollow.run()), asyncio.ensure_future(manager.run())]
            try:
                await asyncio.wait_for(hollow.wait_registered(), 30)
                await asyncio.wait_for(scenario(client), 60)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


async def endpoints_of(client, name):
    try:
        return await client.get(ENDPOINTS, name, "default")
    except NotFound:
        return None


async def slices_of(client, name):
    return (await client.list(ENDPOINTSLICES, "default", label_selector=f"{SLICE_LABEL}={name}"))["items"]


async def first_change(client, resource, resource_version, name=None, label_selector=None):
    """(type, object) of the first change after ``resource_version`` in the default namespace
    (to the object called ``name`` when given)."""
    async def first():
        async for kind, obj in client.watch(resource, "default", resource_version, label_selector=label_selector):
            if kind != "BOOKMARK" and (name is None or obj["metadata"]["name"] == name):
                return kind, obj
    return await asyncio.wait_for(first(), 20)


def addresses(endpoints, which="addresses"):
    return sorted((a["ip"], a["targetRef"]["name"]) for s in endpoints.get("subsets") or []
                  for a in s.get(which) or [])


def test_endpoints_and_slices_follow_pods(apiserver):
    async def scenario(client):
        await client.create(SERVICES, service("web", {"app": "web"}))
        await client.create(PODS, pod("a", "ep-0"))
        await client.create(PODS, pod("b", "ep-1", port=9090))
        await client.create(PODS, pod("db", "ep-1", labels={"app": "db"}))
        lonely = await client.create(PODS, pod("lonely", "nobody-runs-this"))
        lonely["status"] = {"phase": "Running", "podIP": "10.99.0.9",
                            "conditions": [{"type": "Ready", "status": "False"}]}
        await client.replace(PODS, lonely, subresource="status")

        async def three_addresses():
            ep = await endpoints_of(client, "web")
            return ep if ep and len(addresses(ep)) == 2 and addresses(ep, "notReadyAddresses") else None
        ep = await three_addresses() or await until(three_addresses)
        pods = {p["metadata"]["name"]: p for p in (await client.list(PODS, "default"))["items"]}
        for name in ("a", "b"):
            assert pods[name]["status"]["podIP"].startswith("10.244.")
        assert addresses(ep) == sorted((pods[n]["status"]["podIP"], n) for n in ("a", "b"))
        assert addresses(ep, "notReadyAddresses") == [("10.99.0.9", "lonely")]
        ports = sorted(s["ports"][0]["port"] for s in ep["subsets"])
        assert ports == [8080, 8080, 9090] or ports == [8080, 9090]    # named port resolved per pod

        async def slices_with_all_three():   # the slice controller works apart from the endpoints one
            slices = await slices_of(client, "web")
            ready = {e["targetRef"]["name"]: e["conditions"]["ready"] for s in slices for e in s["endpoints"]}
            return slices if ready == {"a": True, "b": True, "lonely": False} else None
        slices = await slices_with_all_three() or await until(slices_with_all_three)
        assert all(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] ==
                   "endpointslice-controller.k8s.io" and s["addressType"] == "IPv4" for s in slices)
        conditions = {e["targetRef"]["name"]: e["conditions"] for s in slices for e in s["endpoints"]}
        assert conditions["a"] == {"ready": True, "serving": True, "terminating": False}
        assert conditions["lonely"]["ready"] is False
        assert "db" not in conditions
        by_pod_port = {e["targetRef"]["name"]: s["ports"][0]["port"] for s in slices for e in s["endpoints"]}
        assert by_pod_port["a"] == 8080 and by_pod_port["b"] == 9090

        rv = ep["metadata"]["resourceVersion"]
        slice_rv = max(int(s["metadata"]["resourceVersion"]) for s in slices)
        slice_of_a = next(s["metadata"]["name"] for s in slices
                          if "a" in {e["targetRef"]["name"] for e in s["endpoints"]})
        await client.patch(PODS, "db", {"metadata": {"annotations": {"x": "y"}}})
        await client.patch(SERVICES, "web", {"metadata": {"annotations": {"touched": "1"}}})
        await client.delete(PODS, "a")
        # the changes that alter nothing were not written: the first write after them is a's removal
        _, first = await first_change(client, ENDPOINTS, rv, "web")
        assert "a" not in {n for _, n in addresses(first)}
        kind, first = await first_change(client, ENDPOINTSLICES, str(slice_rv),
                                         label_selector=f"{SLICE_LABEL}=web")
        assert first["metadata"]["name"] == slice_of_a
        of_a = [e["conditions"] for e in first.get("endpoints") or [] if e["targetRef"]["name"] == "a"]
        assert kind == "DELETED" or not of_a or of_a[0]["ready"] is False   # gone, or terminating

        async def a_gone():
            ep = await endpoints_of(client, "web")
            names = {e["targetRef"]["name"] for s in await slices_of(client, "web") for e in s["endpoints"]}
            return ep if "a" not in {n for _, n in addresses(ep)} and "a" not in names else None
        await until(a_gone)

        await client.delete(SERVICES, "web")

        async def cleaned():
            return await endpoints_of(client, "web") is None and not await slices_of(client, "web")
        await until(cleaned)
    with_cluster(apiserver, scenario)


def test_service_without_selector_is_left_alone(apiserver):
    async def scenario(client):
        manual = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external"},
                  "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]}
        await client.create(ENDPOINTS, manual)
        await client.create(SERVICES, service("external", target_port=5432))
        await client.create(SERVICES, service("empty", {"app": "nothing"}))

        async def placeholder():
            return await slices_of(client, "empty")
        slices = await until(placeholder)
        assert len(slices) == 1 and not slices[0].get("endpoints")
        # both controllers have handled "empty", made after "external": they are past it too
        empty = await until(lambda: endpoints_of(client, "empty"))
        ep = await endpoints_of(client, "external")
        assert addresses_plain(ep) == ["192.0.2.10"]
        assert not await slices_of(client, "external")
        assert not empty.get("subsets")
    with_cluster(apiserver, scenario)


def addresses_plain(endpoints):
    return [a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]


def test_node_ipam_gives_distinct_cidrs_and_releases_them(apiserver):
    async def scenario(client):
        async def both_have_cidrs():
            nodes = (await client.list(NODES))["items"]
            cidrs = [n["spec"].get("podCIDR") for n in nodes]
            return cidrs if len(cidrs) == 2 and all(cidrs) else None
        cidrs = await until(both_have_cidrs)
        assert len(set(cidrs)) == 2 and all(c.startswith("10.244.") and c.endswith("/24") for c in cidrs)
        node = await client.get(NODES, "ep-1")
        await client.delete(NODES, "ep-0")
        await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "late"}})

        async def late_cidr():
            return (await client.get(NODES, "late")).get("spec", {}).get("podCIDR")
        assert await until(late_cidr) != node["spec"]["podCIDR"]
    with_cluster(apiserver, scenario)
