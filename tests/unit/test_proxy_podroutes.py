"""Route planning of the pod network (pkube/proxy/podroutes.py) and the netlink encoding it is
written with (pkube/proxy/routing.py): pure, no kernel."""

from __future__ import annotations

import ipaddress
import json

import pytest

from pkube.proxy import podroutes
from pkube.proxy.podroutes import HOST_GW, VXLAN, Peer, plan, peers, wanted_neighbours, wanted_routes
from pkube.proxy.routing import Neighbour, Route, parse_attrs, parse_route, route_body
from pkube.runtime.netlink import NLMSGHDR

NET, IP = ipaddress.IPv4Network, ipaddress.IPv4Address


def node(name: str, cidr: str | None = None, ip: str | None = None, mac: str | None = None) -> dict:
    meta: dict = {"name": name}
    if mac:
        meta["annotations"] = {podroutes.BACKEND_DATA: json.dumps({"VNI": 1, "VtepMAC": mac})}
    return {"metadata": meta, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"addresses": [{"type": "Hostname", "address": name}]
                       + ([{"type": "InternalIP", "address": ip}] if ip else [])}}


NODES = [node("a", "10.244.0.0/24", "10.200.0.1", "0e:70:0a:c8:00:01"),
         node("b", "10.244.1.0/24", "10.200.0.2", "0e:70:0a:c8:00:02"),
         node("c", "10.244.2.0/24", "10.200.0.3")]


def test_host_gw_routes_every_other_node_via_its_internal_ip():
    found, problems, waiting = peers(NODES, "a", HOST_GW)
    assert wanted_routes(found, HOST_GW) == {Route(NET("10.244.1.0/24"), IP("10.200.0.2")): "b",
                                             Route(NET("10.244.2.0/24"), IP("10.200.0.3")): "c"}
    assert (problems, waiting) == ({}, {})
    assert wanted_neighbours(found, HOST_GW) == {}


def test_vxlan_routes_through_the_vtep_address_and_waits_for_a_mac():
    found, problems, waiting = peers(NODES, "a", VXLAN)
    assert [p.name for p in found] == ["b"]
    assert waiting == {"c": f"node c has published no VTEP MAC yet ({podroutes.BACKEND_DATA})"}
    assert wanted_routes(found, VXLAN, 7) == {Route(NET("10.244.1.0/24"), IP("10.244.1.0"), 7, True): "b"}
    assert wanted_neighbours(found, VXLAN) == {Neighbour(IP("10.244.1.0"), "0e:70:0a:c8:00:02"): "b",
                                               Neighbour(IP("10.200.0.2"), "0e:70:0a:c8:00:02", True): "b"}


def test_nodes_without_podcidr_are_skipped_and_broken_ones_reported():
    nodes = [node("a", "10.244.0.0/24", "10.200.0.1"), node("new"), node("noip", "10.244.3.0/24"),
             node("twin", "10.244.0.0/25", "10.200.0.9"), node("z", "10.244.3.0/24", "10.200.0.4")]
    found, problems, _ = peers(nodes, "a", HOST_GW)
    assert [p.name for p in found] == ["z"]
    assert problems == {"noip": "node noip has no InternalIP address",
                        "twin": "podCIDR 10.244.0.0/25 of node twin overlaps node a's"}


def test_hollow_nodes_are_not_routed_and_heartbeats_change_nothing():
    hollow = node("h", "10.244.7.0/24", "10.200.9.1")
    hollow["metadata"]["labels"] = {podroutes.HOLLOW_LABEL: "true"}
    assert peers([NODES[0], hollow], "a", HOST_GW) == ([], {}, {})
    beat = node("b", "10.244.1.0/24", "10.200.0.2", "0e:70:0a:c8:00:02")
    beat["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert podroutes.routing_view(beat) == podroutes.routing_view(NODES[1])
    assert podroutes.routing_view(node("b", "10.244.1.0/24", "10.200.0.9")) != podroutes.routing_view(NODES[1])


def test_plan_adds_missing_replaces_changed_and_deletes_only_unwanted_routes():
    want = {Route(NET("10.244.1.0/24"), IP("10.200.0.2")): "b", Route(NET("10.244.2.0/24"), IP("10.200.0.3")): "c"}
    installed = [Route(NET("10.244.1.0/24"), IP("10.200.0.2"), oif=3),        # as the kernel lists it
                 Route(NET("10.244.2.0/24"), IP("10.200.0.9"), oif=3),        # c moved
                 Route(NET("10.244.9.0/24"), IP("10.200.0.7"), oif=3)]        # a node gone
    todo = plan(want, installed, {}, [])
    assert todo.add_routes == (Route(NET("10.244.2.0/24"), IP("10.200.0.3")),)
    assert todo.delete_routes == (installed[2],)


def test_plan_keys_fdb_entries_by_mac_and_arp_entries_by_address():
    b = Peer("b", NET("10.244.1.0/24"), IP("10.200.0.2"), "0e:00:00:00:00:02")
    want = wanted_neighbours([b], VXLAN)
    installed = [Neighbour(IP("10.244.1.0"), "0e:00:00:00:00:01"),            # b's old MAC
                 Neighbour(IP("10.200.0.2"), "0e:00:00:00:00:01", True)]
    todo = plan({}, [], want, installed)
    assert set(todo.add_neighbours) == set(want)
    assert todo.delete_neighbours == (installed[1],)                           # the ARP entry is replaced


def test_vtep_mac_is_read_only_from_a_well_formed_annotation():
    assert podroutes.vtep_mac(node("b", mac="0E:70:0A:C8:00:02")) == "0e:70:0a:c8:00:02"
    bad = node("b")
    bad["metadata"]["annotations"] = {podroutes.BACKEND_DATA: "{not json"}
    assert podroutes.vtep_mac(bad) is None
    assert podroutes.vxlan_mac(IP("10.200.0.2")) == "0e:70:0a:c8:00:02"


@pytest.mark.parametrize("route", [Route(NET("10.244.1.0/24"), IP("10.200.0.2")),
                                   Route(NET("10.244.1.0/24"), IP("10.244.1.0"), 7, True)])
def test_route_messages_parse_back(route):
    proto, parsed = parse_route(route_body(route))
    assert proto == 0x70 and parsed == route


def test_parse_attrs_reads_a_header_free_run():
    assert parse_attrs(b"") == {}
    assert NLMSGHDR.size == 16
