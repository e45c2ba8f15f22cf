"""The kernel side of the pod network: routes, a vxlan device, its FDB and neighbour entries.

Spoken in rtnetlink over runtime.netlink's socket and attribute helpers (no pyroute2: see that
module's docstring), with the dumps the runtime does not need. Every operation goes over one
netlink socket opened in the network namespace the `Routing` was made for (`netns`, a path;
the caller's own by default): a netlink socket stays bound to the namespace it was created in,
so the process itself may live elsewhere (tests and benchmarks drive several "nodes" from one
process). Interfaces are therefore looked up by name over netlink, never with
if_nametoindex (which asks the calling thread's namespace).

Every route this module writes carries protocol `PROTO` (0x70): "ours" is exactly the routes
of the main table with that protocol, so a restarted controller can find and remove the stale
ones. Kernel errors become runtime.netlink.NetlinkError naming the operation.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import threading
from dataclasses import dataclass
from typing import Optional

try:
    import _socket as socket
except ImportError:   # not CPython
    import socket

from pkube.proxy.conntrack import attributes as parse_attrs
from pkube.runtime import netlink, syscalls
from pkube.runtime.netlink import NLMSGHDR, NetlinkError, attr, attr_str, attr_u32, ifinfo, mac_bytes

PROTO = 0x70                    # rtm_protocol of every route we own (/etc/iproute2/rt_protos: free)
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RTNH_F_ONLINK = 0x4
RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 0, 1
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT, NTF_SELF = 0x80, 0x2
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO = 1, 3, 4, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 4, 7, 15
AF_BRIDGE = 7
RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")
IFINFOMSG = struct.Struct("=BxHiII")


@dataclass(frozen=True)
class Route:
    """`dst via gateway` (host-gw), or `dst via gateway dev <oif> onlink` (vxlan)."""

    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    oif: Optional[int] = None
    onlink: bool = False

    def __str__(self) -> str:
        dev = f" dev #{self.oif}" if self.oif is not None else ""
        return f"{self.dst} via {self.gateway}{dev}{' onlink' if self.onlink else ''}"


@dataclass(frozen=True)
class Neighbour:
    """A permanent entry on the vxlan device: an ARP entry (`ip` -> `mac`) or, with
    `fdb=True`, a forwarding entry (`mac` is reached through the tunnel to `ip`)."""

    ip: ipaddress.IPv4Address
    mac: str
    fdb: bool = False


@dataclass(frozen=True)
class VxlanLink:
    """What the vxlan device is: its index, MAC, VNI, UDP port, local address and MTU."""

    index: int
    mac: str
    vni: Optional[int] = None
    port: Optional[int] = None
    local: Optional[ipaddress.IPv4Address] = None
    mtu: Optional[int] = None


# ---- parsing (pure) ------------------------------------------------------------------------

def parse_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of every netlink message in `data`."""
    found, offset = [], 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        found.append((kind, flags, seq, data[offset + NLMSGHDR.size:offset + length]))
        offset += (length + 3) & ~3
    return found


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_route(payload: bytes) -> Optional[tuple[int, Route]]:
    """(protocol, Route) of an RTM_NEWROUTE payload in the main table with a destination and
    a gateway; None for any other route."""
    family, dst_len, _, _, table, proto, _, kind, flags = RTMSG.unpack_from(payload)
    attrs = parse_attrs(payload[RTMSG.size:])
    if RTA_TABLE in attrs:
        table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
    if family != socket.AF_INET or table != RT_TABLE_MAIN or kind != RTN_UNICAST \
            or RTA_DST not in attrs or RTA_GATEWAY not in attrs:
        return None
    dst = ipaddress.IPv4Network((ipaddress.IPv4Address(attrs[RTA_DST]), dst_len))
    oif = struct.unpack("=i", attrs[RTA_OIF][:4])[0] if RTA_OIF in attrs else None
    return proto, Route(dst, ipaddress.IPv4Address(attrs[RTA_GATEWAY]), oif, bool(flags & RTNH_F_ONLINK))


def parse_neighbour(payload: bytes, index: int) -> Optional[Neighbour]:
    """The permanent entry of an RTM_NEWNEIGH payload on interface `index`, or None."""
    family, ifindex, state, _, _ = NDMSG.unpack_from(payload)
    attrs = parse_attrs(payload[NDMSG.size:])
    if ifindex != index or not state & NUD_PERMANENT or NDA_DST not in attrs or NDA_LLADDR not in attrs \
            or len(attrs[NDA_DST]) != 4:
        return None
    return Neighbour(ipaddress.IPv4Address(attrs[NDA_DST]), mac_text(attrs[NDA_LLADDR]), family == AF_BRIDGE)


def parse_vxlan(payload: bytes) -> tuple[str, Optional[VxlanLink]]:
    """(kind, link) of an RTM_NEWLINK payload; the link is None unless kind is "vxlan"."""
    _, _, index, _, _ = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload[IFINFOMSG.size:])
    info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode()
    if kind != "vxlan":
        return kind, None
    data = parse_attrs(info.get(IFLA_INFO_DATA, b""))
    vni = struct.unpack("=I", data[IFLA_VXLAN_ID][:4])[0] if IFLA_VXLAN_ID in data else None
    port = struct.unpack("!H", data[IFLA_VXLAN_PORT][:2])[0] if IFLA_VXLAN_PORT in data else None
    local = ipaddress.IPv4Address(data[IFLA_VXLAN_LOCAL]) if IFLA_VXLAN_LOCAL in data else None
    mtu = struct.unpack("=I", attrs[IFLA_MTU][:4])[0] if IFLA_MTU in attrs else None
    return kind, VxlanLink(index, mac_text(attrs.get(IFLA_ADDRESS, b"")), vni, port, local, mtu)


# ---- message bodies (pure) -----------------------------------------------------------------

def route_body(route: Route, proto: int = PROTO) -> bytes:
    body = RTMSG.pack(socket.AF_INET, route.dst.prefixlen, 0, 0, RT_TABLE_MAIN, proto, RT_SCOPE_UNIVERSE,
                      RTN_UNICAST, RTNH_F_ONLINK if route.onlink else 0)
    body += attr(RTA_DST, route.dst.network_address.packed) + attr(RTA_GATEWAY, route.gateway.packed)
    if route.oif is not None:
        body += attr_u32(RTA_OIF, route.oif)
    return body


def neighbour_body(index: int, entry: Neighbour) -> bytes:
    family, flags = (AF_BRIDGE, NTF_SELF) if entry.fdb else (socket.AF_INET, 0)
    return NDMSG.pack(family, index, NUD_PERMANENT, flags, 0) + attr(NDA_DST, entry.ip.packed) \
        + attr(NDA_LLADDR, mac_bytes(entry.mac))


def vxlan_body(name: str, vni: int, port: int, local: ipaddress.IPv4Address, mac: str, mtu: int) -> bytes:
    """An RTM_NEWLINK body making vxlan `name`: no learning (every entry is written by us)."""
    data = attr_u32(IFLA_VXLAN_ID, vni) + attr(IFLA_VXLAN_LOCAL, local.packed) \
        + attr(IFLA_VXLAN_PORT, struct.pack("!H", port)) + attr(IFLA_VXLAN_LEARNING, b"\x00")
    info = attr_str(IFLA_INFO_KIND, "vxlan") + attr(IFLA_INFO_DATA, data)
    return ifinfo() + attr_str(IFLA_IFNAME, name) + attr(IFLA_ADDRESS, mac_bytes(mac)) + attr_u32(IFLA_MTU, mtu) \
        + attr(IFLA_LINKINFO, info)


# ---- the socket ------------------------------------------------------------------------------

def _open_socket(netns: Optional[str]):
    """A NETLINK_ROUTE socket in `netns` (a path) or, for None, the caller's namespace."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    outcome: dict = {}

    def opener():
        try:
            syscalls.setns(netns, syscalls.CLONE_NEWNET)
            outcome["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        except OSError as e:
            outcome["error"] = e
    thread = threading.Thread(target=opener, name=f"netlink in {netns}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise NetlinkError(f"open netlink in {netns}: {outcome['error']}", outcome["error"].errno)
    return outcome["sock"]


class Routing:
    """Routes, links and neighbours of one network namespace. Calls are serialised; use from
    any thread. close() when done."""

    def __init__(self, netns: Optional[str] = None):
        self.netns = netns
        self.sock = _open_socket(netns)
        self.sock.bind((0, 0))
        self.seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def _exchange(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request; (type, payload) of the answers before its ACK / DONE."""
        with self._lock:
            self.seq += 1
            seq = self.seq
            self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
            answers: list[tuple[int, bytes]] = []
            while True:
                for mkind, _, mseq, payload in parse_messages(self.sock.recv(1 << 20)):
                    if mseq != seq:
                        continue
                    if mkind == NLMSG_DONE:
                        return answers
                    if mkind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", payload)[0]
                        if code:
                            raise NetlinkError(f"{what}: {os.strerror(code)}", code)
                        return answers
                    answers.append((mkind, payload))
                    if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                        return answers

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self._exchange(kind, flags | NLM_F_ACK, body, what)

    # -- links --

    def link(self, name: str) -> Optional[tuple[str, Optional[VxlanLink]]]:
        """(kind, vxlan link or None) of interface `name`, or None when there is none."""
        body = ifinfo() + attr_str(IFLA_IFNAME, name)
        try:
            answers = self._exchange(RTM_GETLINK, 0, body, f"look up {name}")
        except NetlinkError as e:
            if e.errno in (19, 2):          # ENODEV, ENOENT
                return None
            raise
        for kind, payload in answers:
            if kind == RTM_NEWLINK:
                return parse_vxlan(payload)
        return None

    def index(self, name: str) -> Optional[int]:
        """The index of interface `name`, or None."""
        body = ifinfo() + attr_str(IFLA_IFNAME, name)
        try:
            answers = self._exchange(RTM_GETLINK, 0, body, f"look up {name}")
        except NetlinkError as e:
            if e.errno in (19, 2):
                return None
            raise
        return next((IFINFOMSG.unpack_from(p)[2] for k, p in answers if k == RTM_NEWLINK), None)

    def create_vxlan(self, name: str, vni: int, port: int, local: ipaddress.IPv4Address, mac: str,
                     mtu: int) -> VxlanLink:
        """Make vxlan `name` and bring it up; raises NetlinkError (EEXIST if it exists)."""
        netlink.check_ifname(name)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, vxlan_body(name, vni, port, local, mac, mtu),
                     f"create vxlan {name}")
        found = self.link(name)
        if found is None or found[1] is None:
            raise NetlinkError(f"create vxlan {name}: it vanished", 19)
        self.request(RTM_NEWLINK, 0, ifinfo(found[1].index, 1, 1), f"bring {name} up")
        return found[1]

    def delete_link(self, name: str) -> bool:
        """Delete interface `name`; False when there was none."""
        index = self.index(name)
        if index is None:
            return False
        self.request(netlink.RTM_DELLINK, 0, ifinfo(index), f"delete {name}")
        return True

    def add_address(self, name: str, address: ipaddress.IPv4Interface) -> None:
        """Give `name` `address` unless it has it."""
        index = self.index(name)
        if index is None:
            raise NetlinkError(f"add {address} to {name}: no interface {name}", 19)
        try:
            self.request(netlink.RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                         netlink.address_body(index, address), f"add {address} to {name}")
        except NetlinkError as e:
            if e.errno != 17:               # EEXIST
                raise

    # -- routes --

    def routes(self, proto: int = PROTO) -> list[Route]:
        """The main table's gateway routes with protocol `proto`."""
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        found = []
        for kind, payload in self._exchange(RTM_GETROUTE, NLM_F_DUMP, body, "list routes"):
            parsed = parse_route(payload) if kind == RTM_NEWROUTE else None
            if parsed is not None and parsed[0] == proto:
                found.append(parsed[1])
        return found

    def replace_route(self, route: Route) -> None:
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, route_body(route), f"add route {route}")

    def delete_route(self, route: Route) -> None:
        """Delete `route`; gone already is fine."""
        try:
            self.request(RTM_DELROUTE, 0, route_body(route), f"delete route {route}")
        except NetlinkError as e:
            if e.errno not in (3, 19):      # ESRCH, ENODEV
                raise

    # -- neighbours and FDB --

    def neighbours(self, index: int) -> list[Neighbour]:
        """The permanent ARP and FDB entries (with a remote address) on interface `index`."""
        found = []
        for family in (socket.AF_INET, AF_BRIDGE):
            body = NDMSG.pack(family, 0, 0, 0, 0)
            for kind, payload in self._exchange(RTM_GETNEIGH, NLM_F_DUMP, body, "list neighbours"):
                entry = parse_neighbour(payload, index) if kind == RTM_NEWNEIGH else None
                if entry is not None and entry.fdb == (family == AF_BRIDGE):
                    found.append(entry)
        return found

    def replace_neighbour(self, index: int, entry: Neighbour) -> None:
        self.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, neighbour_body(index, entry),
                     f"add {'fdb' if entry.fdb else 'neighbour'} {entry.mac} {entry.ip}")

    def delete_neighbour(self, index: int, entry: Neighbour) -> None:
        """Delete `entry`; gone already is fine."""
        try:
            self.request(RTM_DELNEIGH, 0, neighbour_body(index, entry),
                         f"delete {'fdb' if entry.fdb else 'neighbour'} {entry.mac} {entry.ip}")
        except NetlinkError as e:
            if e.errno not in (2, 19):      # ENOENT, ENODEV
                raise
