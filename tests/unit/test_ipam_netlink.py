"""The rtnetlink encoding of pkube/runtime/netlink.py (pure; the system tests run it on the kernel)."""

from __future__ import annotations

import struct

import pytest

from pkube.runtime.netlink import (
    NLMSG_ERROR,
    RTM_NEWLINK,
    attr,
    attr_str,
    check_ifname,
    mac_bytes,
    message,
    parse_ack,
)


def test_attributes_are_padded_to_four_bytes():
    assert attr(3, b"ab") == struct.pack("=HH", 6, 3) + b"ab\0\0"
    assert attr_str(3, "eth0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0\0\0"
    assert len(attr(1, b"abcd")) == 8


def test_a_request_asks_for_an_ack_and_carries_its_length():
    msg = message(RTM_NEWLINK, 0x400, 7, b"x" * 16)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (32, RTM_NEWLINK, 7, 0)
    assert flags & 0x1 and flags & 0x4 and flags & 0x400


def error_message(seq, code):
    body = struct.pack("=i", code) + b"\0" * 16
    return struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, 0, seq, 0) + body


def test_parse_ack_finds_the_answer_to_its_own_request():
    data = error_message(4, 0) + error_message(5, -17)
    assert parse_ack(data, 4) == 0
    assert parse_ack(data, 5) == 17
    assert parse_ack(data, 6) is None


def test_mac_addresses():
    assert mac_bytes("0a:58:0a:c8:07:02") == bytes([10, 88, 10, 200, 7, 2])
    with pytest.raises(ValueError):
        mac_bytes("0a:58")


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a b", "br\"0", "x;y"])
def test_bad_interface_names(name):
    with pytest.raises(ValueError):
        check_ifname(name)
