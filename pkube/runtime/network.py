"""The bridge network: one bridge per node, one veth per sandbox, IPs from IPAM, ports as DNAT.

State lives in `state_dir` (ROOT/network): `ipam.json` holds, per key (a sandbox or
container id), its address, host-side veth, MAC, namespace and published ports. The
host-side veth is named after the address ("pk" + 8 hex digits), so the kernel itself refuses
a second veth for a live address, and IPAM skips any address whose veth is still there.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import string
from contextlib import contextmanager
from collections.abc import Iterator

from pkube.runtime import netlink
from pkube.runtime.ipam import Ipam, IpamError
from pkube.runtime.portmap import (FirewallError, PortMapping, check_table_name, find_conflict, host_port_taken,
                             make_firewall)
from pkube.runtime.records import Record
from pkube.runtime.rootfs import remove_file

VETH_PREFIX = "pk"
STATE_FILES = ("ipam.json", "ensured")   # in state_dir, once the bridge was set up


class NetworkError(Exception):
    """A network operation failed; the message names the operation and the object."""


class PortConflict(NetworkError):
    """A host port asked for is already allocated (docker: "port is already allocated")."""


class Endpoint(Record):
    """A sandbox's interface on the bridge: ip, prefixlen, gateway, mac, host_ifname."""

    FIELDS = ("ip", "prefixlen", "gateway", "mac", "host_ifname")
    FROZEN = True


def veth_name(ip: ipaddress.IPv4Address) -> str:
    """The host-side veth of `ip`: "pk" + its 8 hex digits (unique per address, ≤ 15 chars)."""
    return f"{VETH_PREFIX}{int(ip):08x}"


def veth_address(name: str) -> ipaddress.IPv4Address | None:
    """The address whose host-side veth is called `name` (veth_name's inverse), or None."""
    digits = name.removeprefix(VETH_PREFIX)
    if name.startswith(VETH_PREFIX) and len(digits) == 8 and all(c in string.hexdigits for c in digits):
        return ipaddress.IPv4Address(int(digits, 16))
    return None


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """A locally administered MAC derived from `ip` (0a:58:<ip>, like the CNI bridge plugin)."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


def _read_text(path: str) -> str:
    """The file's text, or "" when it is missing."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write_atomically(path: str, text: str) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn the errors of the lower modules into NetworkError, once, here."""
    try:
        yield
    except (netlink.NetlinkError, FirewallError, IpamError, OSError) as e:
        raise NetworkError(f"{operation}: {e}") from e


class BridgeNetwork:
    """A Linux bridge with masquerade and port publishing, shared by every process on the host
    that uses the same `state_dir`. All methods may be called from several processes at once.

    Egress is masqueraded except towards `no_masquerade` (a CIDR: the cluster's pod network,
    whose other nodes route back to pod addresses; "" masquerades everything)."""

    def __init__(self, state_dir: str | os.PathLike, bridge: str = "pkube0", subnet: str = "10.88.0.0/16",
                 nft_table: str = "pkube", firewall: str = "auto", no_masquerade: str = ""):
        self.state_dir = os.fspath(state_dir)
        self.bridge = netlink.check_ifname(bridge)
        self.ipam = Ipam(os.path.join(self.state_dir, "ipam.json"), subnet)
        self.subnet = self.ipam.subnet
        self.gateway = self.ipam.gateway
        self.nft_table = check_table_name(nft_table)
        if firewall not in ("auto", "nft", "iptables"):
            raise ValueError(f"bad firewall backend {firewall!r}: want auto, nft or iptables")
        self._backend = firewall
        self.no_masquerade = str(ipaddress.IPv4Network(no_masquerade)) if no_masquerade else ""
        self._firewall = None
        self._ensured = False

    @property
    def firewall(self):
        """The firewall backend (portmap.NftFirewall or IptablesFirewall), chosen on first use:
        choosing looks for the `nft` command, which a run on a ready bridge does not need."""
        if self._firewall is None:
            self._firewall = make_firewall(self.nft_table, self.bridge, str(self.subnet), self._backend,
                                           self.no_masquerade)
        return self._firewall

    def ensure(self) -> None:
        """Bridge up with the gateway address, forwarding on, masquerade and the port-map
        hooks in place. Idempotent; attach() calls it once per instance.

        The firewall is checked (an `nft` or `iptables` process) only when this bridge was not
        ensured before: `state_dir/ensured` records what was (bridge, its ifindex, table,
        subnet, backend, boot id), so a bridge made again, a reboot or a teardown makes the
        next ensure check again. Rules removed behind the runtime's back (`nft flush
        ruleset`) are therefore not noticed while that bridge lives: delete the file (or the
        bridge) to have them restored."""
        with self._lock(), _translated(f"set up bridge {self.bridge}"):
            netlink.ensure_bridge(self.bridge, ipaddress.IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}"))
            netlink.write_sysctl("net.ipv4.ip_forward", "1")
            netlink.write_sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet", "1")
            stamp = self._ensured_stamp()
            if _read_text(self._stamp_file) != stamp:
                self.firewall.ensure()
                _write_atomically(self._stamp_file, stamp)
        self._ensured = True

    @property
    def _stamp_file(self) -> str:
        return os.path.join(self.state_dir, "ensured")

    def _ensured_stamp(self) -> str:
        boot = _read_text("/proc/sys/kernel/random/boot_id").strip()
        return (f"{self.bridge} {netlink.link_index(self.bridge)} {self.nft_table} {self.subnet} "
                f"{self._backend} {boot}{' ' + self.no_masquerade if self.no_masquerade else ''}\n")

    def attach(self, key: str, netns_path: str, ifname: str = "eth0") -> Endpoint:
        """Connect the namespace at `netns_path` to the bridge as `ifname`, with an address,
        a default route via the gateway and lo up. Returns the endpoint; a key that is
        already attached gets its endpoint back. On failure nothing is left behind."""
        if not self._ensured:
            self.ensure()
        existing = self.ipam.get(key)
        if existing and "host_ifname" in existing and netlink.link_exists(existing["host_ifname"]):
            return self._endpoint(existing)
        self.reclaim_stale()
        with _translated(f"attach {key} to {self.bridge}"):
            ip = self.ipam.allocate(key, is_live=lambda candidate: netlink.link_exists(veth_name(candidate)))
            try:
                self._plumb(ip, netns_path, ifname)
                self.ipam.update(key, host_ifname=veth_name(ip), mac=mac_for(ip),
                                 netns=netns_path, ifname=ifname)
            except BaseException:
                self._undo_attach(key, veth_name(ip))
                raise
        return self._endpoint(self.ipam.get(key))

    def reclaim_stale(self) -> list[str]:
        """Detach the keys whose veth has vanished (their namespace died without a detach),
        so their addresses and ports are free again. Returns those keys."""
        stale = [key for key, a in self.ipam.allocations().items()
                 if "host_ifname" in a and not netlink.link_exists(a["host_ifname"])]
        for key in stale:
            self.detach(key)
        return stale

    def detach(self, key: str) -> None:
        """Remove `key`'s published ports and veth and free its address. Idempotent."""
        allocation = self.ipam.get(key)
        if allocation is None:
            return
        with _translated(f"detach {key} from {self.bridge}"):
            if allocation.get("ports"):
                with self._lock():
                    self.firewall.unpublish(key)
            host_ifname = veth_name(ipaddress.IPv4Address(allocation["ip"]))
            if netlink.link_exists(host_ifname):  # gone already when its namespace died
                netlink.delete_link(host_ifname)
            self.ipam.release(key)

    def publish(self, key: str, ip: str, mappings: list[PortMapping]) -> None:
        """Make each HOST_PORT reach `ip`:CONTAINER_PORT, from the host's addresses (127.0.0.1
        included), from outside and from other containers. Replaces `key`'s earlier mappings.
        Raises PortConflict (nothing changed) if a host port is already published by another
        key of this network or bound by a host process."""
        for m in mappings:
            if not isinstance(m, PortMapping):
                raise TypeError(f"publish {key}: want PortMapping, got {m!r}")
        if not self._ensured:
            self.ensure()
        with _translated(f"publish ports of {key}"), self._lock():
            others = {k: [PortMapping(**m) for m in a.get("ports", [])]
                      for k, a in self.ipam.allocations().items() if k != key}
            conflict = find_conflict(mappings, others) or host_port_taken(mappings)
            if conflict:
                raise PortConflict(f"publish ports of {key}: {conflict}")
            self.firewall.publish(key, str(ipaddress.IPv4Address(ip)), mappings)
            if self.ipam.get(key) is not None:
                self.ipam.update(key, ports=[m.to_dict() for m in mappings])

    def unpublish(self, key: str) -> None:
        """Remove exactly `key`'s port mappings. Idempotent."""
        with _translated(f"unpublish ports of {key}"):
            with self._lock():
                self.firewall.unpublish(key)
            if self.ipam.get(key) is not None:
                self.ipam.update(key, ports=[])

    def published(self, key: str) -> list[PortMapping]:
        """The mappings last published for `key` (for inspect); [] if none."""
        allocation = self.ipam.get(key) or {}
        return [PortMapping(**m) for m in allocation.get("ports", [])]

    def endpoints(self) -> dict[str, Endpoint]:
        """Every attached key and its endpoint."""
        return {key: self._endpoint(a) for key, a in self.ipam.allocations().items() if "host_ifname" in a}

    def exists(self) -> bool:
        """True when the bridge or the state of a set-up is there, i.e. when teardown() has
        something to remove (a firewall table left without either is not looked for: that
        takes an `nft` or `iptables` process)."""
        return netlink.link_exists(self.bridge) or any(
            os.path.exists(os.path.join(self.state_dir, name)) for name in STATE_FILES)

    def teardown(self) -> None:
        """Remove the firewall table, every veth, the bridge and the state. Idempotent.

        Every veth means every interface named for an address of the subnet, not only those the
        state remembers: a veth whose state was lost, or whose namespace is still being
        destroyed by the kernel (asynchronously), goes too."""
        with self._lock(), _translated(f"tear down bridge {self.bridge}"):
            self.firewall.teardown()
            for name in self._live_veths():
                netlink.delete_link(name)
            netlink.delete_link(self.bridge)
            for name in STATE_FILES + ("ipam.json.lock",):
                remove_file(os.path.join(self.state_dir, name))
        self._ensured = False

    def _live_veths(self) -> list[str]:
        """The host-side veths of this subnet's addresses that exist now, by name."""
        addresses = {name: veth_address(name) for _, name in socket.if_nameindex()}
        return [name for name, ip in addresses.items() if ip is not None and ip in self.subnet]

    def _undo_attach(self, key: str, host_ifname: str) -> None:
        """Best-effort cleanup after a failed attach; the original error is what matters."""
        try:
            netlink.delete_link(host_ifname)
        except netlink.NetlinkError:
            pass
        self.ipam.release(key)

    def _plumb(self, ip: ipaddress.IPv4Address, netns_path: str, ifname: str) -> None:
        netlink.create_veth(veth_name(ip), self.bridge, netns_path, ifname, mac_for(ip))
        netlink.configure_interface(netns_path, ifname,
                                    ipaddress.IPv4Interface(f"{ip}/{self.subnet.prefixlen}"), self.gateway)

    def _endpoint(self, allocation: dict) -> Endpoint:
        return Endpoint(ip=allocation["ip"], prefixlen=self.subnet.prefixlen, gateway=str(self.gateway),
                        mac=allocation["mac"], host_ifname=allocation["host_ifname"])

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise set-up and tear-down between processes sharing `state_dir`."""
        os.makedirs(self.state_dir, exist_ok=True)
        with open(os.path.join(self.state_dir, "network.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
