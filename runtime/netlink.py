"""The netlink and sysctl operations the bridge network needs, through pyroute2.

Each function opens its own short-lived socket; a namespace is named by a path
(/var/run/netns/NAME or /proc/PID/ns/net). Work inside a namespace runs in a short-lived
thread that joins it with setns(CLONE_NEWNET) (per thread, so the process stays where it
is; cheaper than pyroute2's forked helper). pyroute2's errors become `NetlinkError`,
naming the operation and the interface.
"""

from __future__ import annotations

import errno
import ipaddress
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError

from runtime import syscalls

T = TypeVar("T")

SYSCTL_ROOT = Path("/proc/sys")
SYSFS_NET = Path("/sys/class/net")
MAX_IFNAME = 15


class NetlinkError(Exception):
    """A netlink operation failed; `errno` is the kernel's error code when there is one."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


@contextmanager
def _ipr(what: str = "") -> Iterator[IPRoute]:
    """An IPRoute socket in the calling thread's network namespace."""
    try:
        with IPRoute() as ipr:
            yield ipr
    except PyrouteNetlinkError as e:
        raise NetlinkError(f"{what}: {e.args[1] if len(e.args) > 1 else e}", e.code) from e


def in_netns(netns_path: str, fn: Callable[[], T], what: str = "") -> T:
    """Run `fn()` in a new thread that has joined the network namespace at `netns_path`;
    return its result or raise its exception. Raises NetlinkError if the namespace is gone."""
    if not Path(netns_path).exists():
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
        if isinstance(error, OSError) and not isinstance(error, NetlinkError):
            raise NetlinkError(f"{what}: {error}", error.errno) from error
        raise error
    return outcome["result"]


def check_ifname(name: str) -> str:
    """Return `name`, or raise ValueError if the kernel would refuse it as an interface name."""
    if not name or len(name) > MAX_IFNAME or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"bad interface name {name!r}: 1-{MAX_IFNAME} characters, no '/' or spaces")
    return name


def link_exists(name: str) -> bool:
    """True if the host's namespace has an interface called `name` (cheap: sysfs)."""
    return (SYSFS_NET / name).exists()


def links_with_prefix(prefix: str) -> list[str]:
    """Names of the host's interfaces that start with `prefix`."""
    return sorted(p.name for p in SYSFS_NET.iterdir() if p.name.startswith(prefix))


def ensure_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    """Make bridge `name` (if missing), give it `address` (if missing) and bring it up."""
    check_ifname(name)
    with _ipr(what=f"create bridge {name}") as ipr:
        if not ipr.link_lookup(ifname=name):
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except PyrouteNetlinkError as e:
                if e.code != errno.EEXIST:  # another process made it meanwhile
                    raise
        index = ipr.link_lookup(ifname=name)[0]
        present = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
        if (str(address.ip), address.network.prefixlen) not in present:
            try:
                ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            except PyrouteNetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> bool:
    """Delete interface `name` (a veth's peer goes with it). False if it did not exist."""
    with _ipr(what=f"delete {name}") as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except PyrouteNetlinkError as e:
            if e.code != errno.ENODEV:
                raise
            return False
    return True


def create_veth(host_ifname: str, bridge: str, netns_path: str, ifname: str, mac: str) -> None:
    """A veth pair: `host_ifname` enslaved to `bridge` (up, hairpin on), its peer `ifname`
    (with `mac`) created directly inside the namespace at `netns_path`."""
    check_ifname(host_ifname)
    check_ifname(ifname)
    if not Path(netns_path).exists():
        raise NetlinkError(f"create veth {host_ifname}: network namespace {netns_path} does not exist",
                           errno.ENOENT)
    with _ipr(what=f"create veth {host_ifname} into {netns_path}") as ipr:
        master = ipr.link_lookup(ifname=bridge)
        if not master:
            raise NetlinkError(f"create veth {host_ifname}: no bridge {bridge}", errno.ENODEV)
        ipr.link("add", ifname=host_ifname, kind="veth",
                 peer={"ifname": ifname, "address": mac, "net_ns_fd": netns_path})
        index = ipr.link_lookup(ifname=host_ifname)[0]
        ipr.link("set", index=index, master=master[0], state="up")
    write_sysfs(SYSFS_NET / host_ifname / "brport" / "hairpin_mode", "1")


def configure_interface(netns_path: str, ifname: str, address: ipaddress.IPv4Interface,
                        gateway: ipaddress.IPv4Address) -> None:
    """Inside the namespace: lo up, `ifname` up with `address`, default route via `gateway`."""
    what = f"configure {ifname} in {netns_path}"

    def configure():
        with _ipr(what) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            ipr.link("set", index=index, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
    in_netns(netns_path, configure, what)


def loopback_up(netns_path: str) -> None:
    """Bring `lo` up in the namespace at `netns_path` (for --network none)."""
    what = f"bring lo up in {netns_path}"

    def up():
        with _ipr(what) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    in_netns(netns_path, up, what)


def write_sysctl(name: str, value: str) -> None:
    """Set sysctl `name` (dotted, e.g. "net.ipv4.ip_forward") if it differs."""
    write_sysfs(SYSCTL_ROOT / name.replace(".", "/"), value)


def write_sysfs(path: Path, value: str) -> None:
    """Write `value` to a /proc/sys or /sys file unless it already holds it."""
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as e:
        raise NetlinkError(f"write {value} to {path}: {e.strerror or e}", e.errno) from e
