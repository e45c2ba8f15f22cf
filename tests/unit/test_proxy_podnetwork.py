"""The pod network controller (pkube/proxy/podnetwork.py) over a recording Routing and FakeApi:
what it reports and retries, and what it publishes. The real kernel and apiserver run the
same paths in tests/system/test_pod_network.py."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging

from pkube.client.fake import FakeApi
from pkube.client.resources import NODES
from pkube.proxy import podroutes
from pkube.proxy.podnetwork import FAILED_REASON, PodNetwork, PodNetworkConfig
from pkube.proxy.routing import Route, VxlanLink
from pkube.runtime.netlink import NetlinkError
from tests.unit.test_proxy_podroutes import node


class RecordingRouting:
    """The kernel as a few dicts; `unreachable` gateways are refused as the kernel would."""

    def __init__(self, unreachable=()):
        self.installed: dict = {}               # dst -> Route
        self.entries: list = []
        self.links: dict = {}                   # name -> VxlanLink
        self.deleted_links: list = []
        self.unreachable = {ipaddress.IPv4Address(ip) for ip in unreachable}

    def routes(self):
        return list(self.installed.values())

    def replace_route(self, route: Route) -> None:
        if route.gateway in self.unreachable:
            raise NetlinkError(f"add route {route}: Network is unreachable", errno.ENETUNREACH)
        self.installed[route.dst] = route

    def delete_route(self, route: Route) -> None:
        self.installed.pop(route.dst, None)

    def neighbours(self, index):
        return list(self.entries)

    def replace_neighbour(self, index, entry) -> None:
        self.entries = [e for e in self.entries if (e.fdb, e.mac if e.fdb else e.ip) !=
                        (entry.fdb, entry.mac if entry.fdb else entry.ip)] + [entry]

    def delete_neighbour(self, index, entry) -> None:
        self.entries.remove(entry)

    def link(self, name):
        return ("vxlan", self.links[name]) if name in self.links else None

    def create_vxlan(self, name, vni, port, local, mac, mtu):
        self.links[name] = VxlanLink(7, mac, vni, port, local, mtu)
        return self.links[name]

    def delete_link(self, name) -> bool:
        self.deleted_links.append(name)
        return self.links.pop(name, None) is not None

    def add_address(self, name, address) -> None:
        pass


def controller(api: FakeApi, routing: RecordingRouting, mode: str, nodes: list[dict], **config) -> PodNetwork:
    network = PodNetwork(api, PodNetworkConfig(mode, "a", **config), routing)
    for obj in nodes:
        network.informer.apply_event("ADDED", obj)
    return network


def test_a_route_that_cannot_be_installed_is_reported_once_and_the_others_installed(caplog):
    nodes = [node("a", "10.244.1.0/24", "10.200.0.1"), node("b", "10.244.2.0/24", "10.200.0.2"),
             node("far", "10.244.9.0/24", "192.0.2.9")]
    routing = RecordingRouting(unreachable=["192.0.2.9"])
    api = FakeApi()
    network = controller(api, routing, podroutes.HOST_GW, nodes)

    async def rounds():
        return [await network.reconcile() for _ in range(3)]
    with caplog.at_level(logging.INFO, "pkube.proxy.podnetwork"):
        assert asyncio.run(rounds()) == [True, True, True]          # retried while it fails
    assert list(routing.installed) == [ipaddress.IPv4Network("10.244.2.0/24")]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["pod network: no route to node far's pods: add route 10.244.9.0/24 via 192.0.2.9: "
                      "Network is unreachable"]
    assert network.recorder.pending() == 1
    event = asyncio.run(first_event_written(network.recorder, api))
    assert (event["involvedObject"]["name"], event["type"], event["reason"]) == ("far", "Warning", FAILED_REASON)
    assert event["message"].startswith("a: add route 10.244.9.0/24")


async def first_event_written(recorder, api: FakeApi) -> dict:
    """Run ``recorder`` until it has written an Event through ``api``; that Event."""
    async def written() -> dict:
        while not (events := [w[3] for w in api.writes if w[1] == "events"]):
            await asyncio.sleep(0)
        return events[0]
    task = asyncio.ensure_future(recorder.run())
    try:
        return await asyncio.wait_for(written(), 10)
    finally:
        task.cancel()


def test_vxlan_waits_for_an_address_then_makes_the_device_and_publishes_its_mac():
    api = FakeApi()
    own = node("a", "10.244.1.0/24")                                 # no InternalIP yet
    asyncio.run(api.create(NODES, own))
    routing = RecordingRouting()
    network = controller(api, routing, podroutes.VXLAN, [own, node("b", "10.244.2.0/24", "10.200.0.2", "0e:70:0a:c8:00:02")])
    assert asyncio.run(network.reconcile()) is False and routing.links == {}

    network.informer.apply_event("MODIFIED", node("a", "10.244.1.0/24", "10.200.0.1"))
    assert asyncio.run(network.reconcile()) is False
    assert routing.links["pkube-vxlan"].mac == "0e:70:0a:c8:00:01"
    published = asyncio.run(api.get(NODES, "a"))["metadata"]["annotations"]
    assert podroutes.vtep_mac({"metadata": {"annotations": published}}) == "0e:70:0a:c8:00:01"
    assert published[podroutes.PUBLIC_IP] == "10.200.0.1"
    assert routing.routes() == [Route(ipaddress.IPv4Network("10.244.2.0/24"), ipaddress.IPv4Address("10.244.2.0"),
                                      7, True)]
    assert len(routing.entries) == 2


def test_host_gw_removes_a_vxlan_device_left_by_an_earlier_mode():
    routing = RecordingRouting()
    routing.create_vxlan("pkube-vxlan", 1, 8472, ipaddress.IPv4Address("10.200.0.1"), "0e:70:0a:c8:00:01", 1450)
    network = controller(FakeApi(), routing, podroutes.HOST_GW, [node("a", "10.244.1.0/24", "10.200.0.1")])
    assert asyncio.run(network.reconcile()) is False
    assert routing.links == {} and routing.deleted_links == ["pkube-vxlan"]
