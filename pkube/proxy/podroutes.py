"""Route planning for the pod network (pure): which routes, ARP and FDB entries a node wants
to every other node's podCIDR, and what to change to get there from what is installed.

Modes:
- host-gw: `podCIDR via <node InternalIP>`; the nodes share a layer-2 segment.
- vxlan: every node has a vxlan device whose MAC it publishes on its Node (BACKEND_DATA);
  per remote node: `podCIDR via <its VTEP address> dev pkube-vxlan onlink`, an ARP entry
  VTEP address -> its MAC, and an FDB entry MAC -> its InternalIP (the tunnel's far end).
  A node's VTEP address is the network address of its podCIDR (10.244.2.0 for
  10.244.2.0/24), as flannel does: it needs no allocation and no address from the bridge.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

from pkube.proxy.routing import Neighbour, Route

HOST_GW, VXLAN, NONE = "host-gw", "vxlan", "none"
MODES = (HOST_GW, VXLAN, NONE)
BACKEND_TYPE = "network.pkube.io/backend-type"      # "vxlan"
BACKEND_DATA = "network.pkube.io/backend-data"      # {"VNI": 1, "VtepMAC": "0e:70:..."}
PUBLIC_IP = "network.pkube.io/public-ip"            # the tunnel's address (the node's InternalIP)
HOLLOW_LABEL = "node.pkube.io/hollow"              # pkube/cluster/hollow.py's simulated nodes: no machine to route to


@dataclass(frozen=True)
class Peer:
    """Another node, as the pod network needs it."""

    name: str
    pod_cidr: ipaddress.IPv4Network
    node_ip: ipaddress.IPv4Address
    vtep_mac: Optional[str] = None

    @property
    def vtep_ip(self) -> ipaddress.IPv4Address:
        return self.pod_cidr.network_address


@dataclass(frozen=True)
class Plan:
    """Changes that take the installed state to the wanted one."""

    add_routes: tuple[Route, ...] = ()
    delete_routes: tuple[Route, ...] = ()
    add_neighbours: tuple[Neighbour, ...] = ()
    delete_neighbours: tuple[Neighbour, ...] = ()


def internal_ip(node: dict) -> Optional[ipaddress.IPv4Address]:
    """The node's InternalIP from status.addresses, or None."""
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            try:
                return ipaddress.IPv4Address(address.get("address"))
            except ValueError:
                return None
    return None


def pod_cidr(node: dict) -> Optional[ipaddress.IPv4Network]:
    try:
        return ipaddress.IPv4Network((node.get("spec") or {}).get("podCIDR") or "")
    except ValueError:
        return None


def vtep_mac(node: dict) -> Optional[str]:
    """The VtepMAC the node's annotation carries, or None (absent or malformed)."""
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(BACKEND_DATA)
    try:
        mac = json.loads(text).get("VtepMAC") if text else None
    except (ValueError, AttributeError):
        return None
    return mac.lower() if isinstance(mac, str) and len(mac.split(":")) == 6 else None


def backend_annotations(mac: str, vni: int, node_ip: ipaddress.IPv4Address) -> dict[str, str]:
    """The annotations a node in vxlan mode publishes about itself."""
    return {BACKEND_TYPE: VXLAN, BACKEND_DATA: json.dumps({"VNI": vni, "VtepMAC": mac}),
            PUBLIC_IP: str(node_ip)}


def peers(nodes: list[dict], self_name: str, mode: str) -> tuple[list[Peer], dict[str, str], dict[str, str]]:
    """(the other nodes the network can reach, {node: why not} for those it should reach but
    cannot, {node: what it waits for} for those not ready yet). Nodes without a podCIDR are
    left out silently (nodeipam has not got to them), and so are hollow nodes (simulated: no
    machine, no pods to reach); a podCIDR overlapping one already taken is refused for the
    node that sorts later."""
    found: list[Peer] = []
    problems: dict[str, str] = {}
    waiting: dict[str, str] = {}
    own = next((pod_cidr(n) for n in nodes if (n.get("metadata") or {}).get("name") == self_name), None)
    taken: dict[ipaddress.IPv4Network, str] = {own: self_name} if own else {}
    for node in sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name") or ""):
        name = (node.get("metadata") or {}).get("name") or ""
        cidr = pod_cidr(node)
        if name == self_name or cidr is None or is_hollow(node):
            continue
        ip = internal_ip(node)
        mac = vtep_mac(node) if mode == VXLAN else None
        clash = next((other for net, other in taken.items() if net.overlaps(cidr)), None)
        if ip is None:
            problems[name] = f"node {name} has no InternalIP address"
        elif clash is not None:
            problems[name] = f"podCIDR {cidr} of node {name} overlaps node {clash}'s"
        elif mode == VXLAN and mac is None:
            waiting[name] = f"node {name} has published no VTEP MAC yet ({BACKEND_DATA})"
        else:
            taken[cidr] = name
            found.append(Peer(name, cidr, ip, mac))
    return found, problems, waiting


def is_hollow(node: dict) -> bool:
    return ((node.get("metadata") or {}).get("labels") or {}).get(HOLLOW_LABEL) == "true"


def routing_view(node: dict) -> tuple:
    """What of a Node the pod network depends on: an update that leaves it unchanged (a
    status heartbeat) needs no round."""
    return pod_cidr(node), internal_ip(node), vtep_mac(node), is_hollow(node)


def wanted_routes(found: list[Peer], mode: str, vxlan_index: Optional[int] = None) -> dict[Route, str]:
    """Route -> node name, for every peer."""
    if mode == HOST_GW:
        return {Route(p.pod_cidr, p.node_ip): p.name for p in found}
    if mode == VXLAN:
        return {Route(p.pod_cidr, p.vtep_ip, vxlan_index, True): p.name for p in found}
    return {}


def wanted_neighbours(found: list[Peer], mode: str) -> dict[Neighbour, str]:
    """ARP and FDB entry -> node name (vxlan only)."""
    if mode != VXLAN:
        return {}
    wanted: dict[Neighbour, str] = {}
    for p in found:
        wanted[Neighbour(p.vtep_ip, p.vtep_mac)] = p.name
        wanted[Neighbour(p.node_ip, p.vtep_mac, fdb=True)] = p.name
    return wanted


def same_route(want: Route, have: Route) -> bool:
    """True if the installed `have` is `want` (an oif the kernel filled in for a host-gw
    route does not count)."""
    return (want.dst, want.gateway, want.onlink) == (have.dst, have.gateway, have.onlink) \
        and (want.oif is None or want.oif == have.oif)


def plan(routes: dict[Route, str], installed_routes: list[Route], neighbours: dict[Neighbour, str],
         installed_neighbours: list[Neighbour]) -> Plan:
    """What to add (missing or different) and delete (ours, not wanted): routes are matched
    by destination, so a changed gateway is one replace and no delete."""
    have = {r.dst: r for r in installed_routes}
    add = tuple(r for r in routes if r.dst not in have or not same_route(r, have[r.dst]))
    wanted_dsts = {r.dst for r in routes}
    delete = tuple(r for r in installed_routes if r.dst not in wanted_dsts)
    have_neighbours = {_neighbour_key(n): n for n in installed_neighbours}
    add_n = tuple(n for n in neighbours if have_neighbours.get(_neighbour_key(n)) != n)
    wanted_keys = {_neighbour_key(n) for n in neighbours}
    delete_n = tuple(n for n in installed_neighbours if _neighbour_key(n) not in wanted_keys)
    return Plan(add, delete, add_n, delete_n)


def _neighbour_key(entry: Neighbour) -> tuple:
    """What the kernel keys an entry by: an ARP entry by address, an FDB entry by MAC."""
    return (True, entry.mac) if entry.fdb else (False, entry.ip)


def vxlan_mac(node_ip: ipaddress.IPv4Address) -> str:
    """The MAC a node's vxlan device is made with: locally administered, derived from its
    address, so a device made again (after a reboot) keeps the MAC its peers know."""
    return "0e:70:" + ":".join(f"{b:02x}" for b in node_ip.packed)
