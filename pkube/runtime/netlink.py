"""The few rtnetlink and sysctl operations the bridge network needs.

Why not pyroute2 (not a dependency of pkube): importing it costs 0.4-0.5 s (its package __init__
loads every netlink family), paid by every `pdocker run` on the bridge, several times the
whole start of a container. The eight requests below are a small, fixed subset of rtnetlink
(rtnetlink(7)), spoken over the stdlib's AF_NETLINK socket in well under a millisecond each.

A namespace is named by a path (/var/run/netns/NAME or /proc/PID/ns/net). Work inside a
namespace runs in a short-lived thread that joins it with setns(CLONE_NEWNET) (per thread:
the process stays where it is). Kernel errors become `NetlinkError` with the errno, naming the
operation and the interface.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
import threading
from collections.abc import Callable

# The C module: the `socket` module wrapped around it (enum tables, selectors) would cost
# every start about 2 ms.
try:
    import _socket as socket
except ImportError:   # not CPython
    import socket

from pkube.runtime import syscalls

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (4 ms)
if TYPE_CHECKING:
    from typing import TypeVar
    T = TypeVar("T")

SYSCTL_ROOT = "/proc/sys"
MAX_IFNAME = 15

# rtnetlink(7) / linux/rtnetlink.h, linux/if_link.h, linux/veth.h
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE = 16, 17, 19, 20, 21, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_PROTINFO, IFLA_BRPORT_MODE, NLA_F_NESTED = 12, 4, 0x8000
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_GATEWAY = 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBi")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")


class NetlinkError(Exception):
    """A netlink operation failed; `errno` is the kernel's error code when there is one."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


# ---- message encoding (pure) -----------------------------------------------------------------

def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: header, payload, padding to 4 bytes."""
    body = RTATTR.pack(RTATTR.size + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def mac_bytes(mac: str) -> bytes:
    """b'\\x0a\\x58...' from "0a:58:..."; raises ValueError on a malformed MAC."""
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A whole netlink request: header (asking for an ACK) and body."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def parse_ack(data: bytes, seq: int) -> int | None:
    """The errno (0 for success) of the NLMSG_ERROR answering `seq` in `data`, or None."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _, msg_seq, _ = NLMSGHDR.unpack_from(data, offset)
        if kind == NLMSG_ERROR and msg_seq == seq:
            return -struct.unpack_from("=i", data, offset + NLMSGHDR.size)[0]
        if length < NLMSGHDR.size:
            break
        offset += (length + 3) & ~3
    return None


# ---- the socket ------------------------------------------------------------------------------

def address_body(index: int, address: ipaddress.IPv4Interface) -> bytes:
    """The RTM_NEWADDR / RTM_DELADDR body giving interface `index` `address`."""
    body = IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, address.ip.packed) + attr(IFA_ADDRESS, address.ip.packed)
    if address.network.prefixlen < 31:
        body += attr(IFA_BROADCAST, address.network.broadcast_address.packed)
    return body


class RtNetlink:
    """An rtnetlink socket in the calling thread's network namespace. Each request waits for
    the kernel's ACK and raises NetlinkError on a negative one."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # 0 = NETLINK_ROUTE
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> "RtNetlink":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self.seq += 1
        self.sock.send(message(kind, flags, self.seq, body))
        while True:
            code = parse_ack(self.sock.recv(65536), self.seq)
            if code is not None:
                break
        if code:
            raise NetlinkError(f"{what}: {os.strerror(code)}", code)

    def index(self, name: str, what: str) -> int:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            raise NetlinkError(f"{what}: no interface {name}", errno.ENODEV) from None

    def create_link(self, name: str, kind: str, what: str, data: bytes = b"") -> None:
        info = attr_str(IFLA_INFO_KIND, kind) + (attr(IFLA_INFO_DATA, data) if data else b"")
        body = ifinfo() + attr_str(IFLA_IFNAME, name) + attr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, what)

    def set_link(self, index: int, what: str, up: bool = False, master: int | None = None) -> None:
        body = ifinfo(index, IFF_UP if up else 0, IFF_UP if up else 0)
        if master is not None:
            body += attr_u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, 0, body, what)

    def set_hairpin(self, index: int, what: str) -> None:
        """Let the bridge send frames back out of the port they came in on (bridge link set
        hairpin on), so a container reaches its own published port."""
        mode = attr(IFLA_PROTINFO | NLA_F_NESTED, attr(IFLA_BRPORT_MODE, b"\x01"))
        self.request(RTM_SETLINK, 0, ifinfo(index, family=socket.AF_BRIDGE) + mode, what)

    def delete_link(self, index: int, what: str) -> None:
        self.request(RTM_DELLINK, 0, ifinfo(index), what)

    def add_address(self, index: int, address: ipaddress.IPv4Interface, what: str) -> None:
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, address_body(index, address), what)

    def delete_address(self, index: int, address: ipaddress.IPv4Interface, what: str) -> None:
        self.request(RTM_DELADDR, 0, address_body(index, address), what)

    def add_default_route(self, gateway: ipaddress.IPv4Address, what: str) -> None:
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                          RTN_UNICAST, 0) + attr(RTA_GATEWAY, gateway.packed)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, what)


def in_netns(netns_path: str, fn: Callable[[], T], what: str = "") -> T:
    """Run `fn()` in a new thread that has joined the network namespace at `netns_path`;
    return its result or raise its exception. Raises NetlinkError if the namespace is gone."""
    if not os.path.exists(netns_path):
        raise NetlinkError(f"{what}: network namespace {netns_path} does not exist", errno.ENOENT)
    outcome: dict = {}

    def body():
        try:
            syscalls.setns(netns_path, syscalls.CLONE_NEWNET)
            outcome["result"] = fn()
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e
    thread = threading.Thread(target=body, name=f"netns {netns_path}")
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, OSError):
            raise NetlinkError(f"{what}: {error}", error.errno) from error
        raise error
    return outcome["result"]


# ---- operations ------------------------------------------------------------------------------

def check_ifname(name: str) -> str:
    """Return `name`, or raise ValueError unless it is 1-15 letters, digits, '-', '_' or '.'
    (stricter than the kernel: names also go into nft rules)."""
    if not name or len(name) > MAX_IFNAME or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise ValueError(f"bad interface name {name!r}: 1-{MAX_IFNAME} letters, digits, '-', '_' or '.'")
    return name


def link_index(name: str) -> int | None:
    """The index of interface `name` in the calling thread's network namespace, or None."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def link_exists(name: str) -> bool:
    """True if the calling thread's network namespace has an interface called `name`.

    (An ioctl, not sysfs: /sys/class/net shows the namespace sysfs was mounted in, which is
    not ours under `nsenter --net`.)"""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def ensure_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    """Make bridge `name` (if missing), give it `address` (if missing) and bring it up."""
    ensure_link(name, "bridge", address)


def ensure_link(name: str, kind: str, address: ipaddress.IPv4Interface) -> None:
    """Make an interface `name` of `kind` ("bridge", "dummy") if missing, give it `address`
    if missing and bring it up. Safe to call again and from several processes."""
    check_ifname(name)
    what = f"create {kind} {name}"
    with RtNetlink() as nl:
        try:
            nl.create_link(name, kind, what)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:  # there already, or another process made it meanwhile
                raise
        index = nl.index(name, what)
        try:
            nl.add_address(index, address, f"add {address} to {name}")
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise
        nl.set_link(index, f"bring {name} up", up=True)


def ensure_address(ifname: str, address: ipaddress.IPv4Interface) -> None:
    """Give interface `ifname` `address` unless it has it (e.g. a Service address on lo,
    which makes it local to the host and its namespace's every interface)."""
    what = f"add {address} to {ifname}"
    with RtNetlink() as nl:
        try:
            nl.add_address(nl.index(ifname, what), address, what)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise


def remove_address(ifname: str, address: ipaddress.IPv4Interface) -> bool:
    """Take `address` off `ifname`; False when it was not there."""
    what = f"remove {address} from {ifname}"
    with RtNetlink() as nl:
        try:
            nl.delete_address(nl.index(ifname, what), address, what)
        except NetlinkError as e:
            if e.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                raise
            return False
    return True


def delete_link(name: str) -> bool:
    """Delete interface `name` (a veth's peer goes with it). False if it did not exist."""
    with RtNetlink() as nl:
        try:
            nl.delete_link(nl.index(name, f"delete {name}"), f"delete {name}")
        except NetlinkError as e:
            if e.errno != errno.ENODEV:
                raise
            return False
    return True


def create_veth(host_ifname: str, bridge: str, netns_path: str, ifname: str, mac: str) -> None:
    """A veth pair: `host_ifname` enslaved to `bridge` (up, hairpin on), its peer `ifname`
    (with `mac`) created directly inside the namespace at `netns_path`."""
    check_ifname(host_ifname)
    check_ifname(ifname)
    what = f"create veth {host_ifname} into {netns_path}"
    try:
        ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetlinkError(f"{what}: network namespace {netns_path} does not exist", e.errno) from e
    try:
        with RtNetlink() as nl:
            master = nl.index(bridge, what)
            peer = ifinfo() + attr_str(IFLA_IFNAME, ifname) + attr(IFLA_ADDRESS, mac_bytes(mac)) \
                + attr_u32(IFLA_NET_NS_FD, ns_fd)
            nl.create_link(host_ifname, "veth", what, data=attr(VETH_INFO_PEER, peer))
            index = nl.index(host_ifname, what)
            nl.set_link(index, what, up=True, master=master)
            nl.set_hairpin(index, what)
    finally:
        os.close(ns_fd)


def configure_interface(netns_path: str, ifname: str, address: ipaddress.IPv4Interface,
                        gateway: ipaddress.IPv4Address) -> None:
    """Inside the namespace: lo up, `ifname` up with `address`, default route via `gateway`."""
    what = f"configure {ifname} in {netns_path}"

    def configure():
        with RtNetlink() as nl:
            nl.set_link(nl.index("lo", what), what, up=True)
            index = nl.index(ifname, what)
            nl.add_address(index, address, what)
            nl.set_link(index, what, up=True)
            nl.add_default_route(gateway, what)
    in_netns(netns_path, configure, what)


def loopback_up(netns_path: str) -> None:
    """Bring `lo` up in the namespace at `netns_path` (for --network none)."""
    what = f"bring lo up in {netns_path}"

    def up():
        with RtNetlink() as nl:
            nl.set_link(nl.index("lo", what), what, up=True)
    in_netns(netns_path, up, what)


def write_sysctl(name: str, value: str) -> None:
    """Set sysctl `name` (dotted, e.g. "net.ipv4.ip_forward") if it differs."""
    write_sysfs(f"{SYSCTL_ROOT}/{name.replace('.', '/')}", value)


def write_sysfs(path: str | os.PathLike, value: str) -> None:
    """Write `value` to a /proc/sys or /sys file unless it already holds it."""
    try:
        with open(path) as f:
            unchanged = f.read().strip() == value
        if not unchanged:
            with open(path, "w") as f:
                f.write(value)
    except OSError as e:
        raise NetlinkError(f"write {value} to {path}: {e.strerror or e}", e.errno) from e
