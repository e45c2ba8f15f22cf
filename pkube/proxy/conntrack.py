"""Deleting stale UDP conntrack entries (ctnetlink over the stdlib's AF_NETLINK socket).

A UDP "connection" lives in conntrack as long as datagrams keep coming: when an endpoint
leaves a Service, a client that keeps its socket would keep reaching the gone endpoint
through the old DNAT (TCP does not need this: the endpoint's reset or timeout ends it).
kube-proxy runs `conntrack -D` for them; the `conntrack` command is not installed here, so
this module dumps the table and deletes the matching entries itself (netlink(7),
linux/netfilter/nfnetlink_conntrack.h).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from pkube.proxy.model import Flow

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
NLA_TYPE_MASK = 0x3FFF
PROTOCOL_NUMBERS = {"udp": 17, "sctp": 132}

NLMSGHDR = struct.Struct("=IHHII")
NFGENMSG = struct.Struct("=BBH")
NLATTR = struct.Struct("=HH")


class ConntrackError(Exception):
    """A conntrack request failed; the message names it and the kernel's error."""


@dataclass(frozen=True)
class Entry:
    """One conntrack entry's tuples, and the raw original tuple attribute (to delete it by)."""

    protocol: int
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int
    orig_attr: bytes

    def matches(self, flow: Flow) -> bool:
        return (self.protocol == PROTOCOL_NUMBERS.get(flow.protocol)
                and self.reply_src == flow.endpoint_ip and self.reply_sport == flow.endpoint_port
                and self.orig_dport == flow.front_port and flow.front_ip in ("", self.orig_dst)
                and self.orig_dst != self.reply_src)            # DNATed, not a direct flow


def attributes(data: bytes) -> dict[int, bytes]:
    """The netlink attributes in `data`, by type (nested flag masked off)."""
    found, offset = {}, 0
    while offset + NLATTR.size <= len(data):
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + NLATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def _tuple(data: bytes) -> tuple[int, str, str, int, int] | None:
    """(protocol, src, dst, sport, dport) of a CTA_TUPLE_* attribute; None if not IPv4 with ports."""
    tup = attributes(data)
    ips, proto = attributes(tup.get(CTA_TUPLE_IP, b"")), attributes(tup.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC not in ips or CTA_PROTO_DST_PORT not in proto:
        return None
    return (proto[CTA_PROTO_NUM][0], str(ipaddress.IPv4Address(ips[CTA_IP_V4_SRC])),
            str(ipaddress.IPv4Address(ips[CTA_IP_V4_DST])),
            struct.unpack("!H", proto[CTA_PROTO_SRC_PORT])[0], struct.unpack("!H", proto[CTA_PROTO_DST_PORT])[0])


def parse_entry(body: bytes) -> Entry | None:
    """The Entry of one IPCTNL_MSG_CT_NEW message body (after its nfgenmsg); None if not IPv4."""
    attrs = attributes(body[NFGENMSG.size:])
    orig_raw, reply_raw = attrs.get(CTA_TUPLE_ORIG), attrs.get(CTA_TUPLE_REPLY)
    orig = _tuple(orig_raw) if orig_raw else None
    reply = _tuple(reply_raw) if reply_raw else None
    if orig is None or reply is None:
        return None
    nested = NLATTR.pack(NLATTR.size + len(orig_raw), CTA_TUPLE_ORIG | 0x8000) + orig_raw
    return Entry(orig[0], orig[2], orig[4], reply[1], reply[3], nested + b"\0" * (-len(nested) % 4))


class Conntrack:
    """ctnetlink in the caller's network namespace, or in the named one `netns` (tests)."""

    def __init__(self, netns: str | None = None):
        self.netns = netns
        self._seq = 0

    def delete_flows(self, flows: list[Flow]) -> int:
        """Delete every entry of `flows`; how many were deleted. Raises ConntrackError."""
        if not flows:
            return 0
        if self.netns is None:
            return self._delete_flows(flows)
        from pkube.runtime.netlink import NetlinkError, in_netns
        try:
            return in_netns(f"/run/netns/{self.netns}", lambda: self._delete_flows(flows), "conntrack")
        except NetlinkError as e:
            raise ConntrackError(str(e)) from e

    def _delete_flows(self, flows: list[Flow]) -> int:
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
                sock.bind((0, 0))
                stale = [e for e in self._dump(sock) if any(e.matches(f) for f in flows)]
                return sum(self._delete(sock, e) for e in stale)
        except OSError as e:
            raise ConntrackError(f"delete stale conntrack entries: {e}") from e

    def _request(self, sock, kind: int, flags: int, payload: bytes) -> int:
        self._seq += 1
        body = NFGENMSG.pack(socket.AF_INET, 0, 0) + payload
        msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | kind
        sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | flags, self._seq, 0) + body)
        return self._seq

    def _messages(self, sock, seq: int):
        """(type, body) of the answers to `seq` until DONE or an error/ack; raises on errors."""
        while True:
            data, offset = sock.recv(1 << 20), 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
                body = data[offset + NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, errno.errorcode.get(code, str(code)))
                    return
                yield kind, body

    def _dump(self, sock) -> list[Entry]:
        seq = self._request(sock, IPCTNL_MSG_CT_GET, NLM_F_DUMP, b"")
        entries = (parse_entry(body) for _kind, body in self._messages(sock, seq))
        return [e for e in entries if e is not None]

    def _delete(self, sock, entry: Entry) -> int:
        seq = self._request(sock, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, entry.orig_attr)
        try:
            for _ in self._messages(sock, seq):
                pass
        except OSError as e:
            if e.errno == errno.ENOENT:          # gone meanwhile
                return 0
            raise
        return 1
