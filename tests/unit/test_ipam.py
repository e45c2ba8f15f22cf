"""IPAM: lowest free address, never the gateway or a live address, persisted, safe across processes."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing

import pytest

from pkube.runtime.ipam import Ipam, IpamError, PoolExhausted


def ip(text):
    return ipaddress.IPv4Address(text)


def test_first_address_skips_the_gateway(tmp_path):
    ipam = Ipam(tmp_path / "ipam.json", "10.200.7.0/24")
    assert ipam.allocate("a") == ip("10.200.7.2")
    assert ipam.allocate("b") == ip("10.200.7.3")
    assert ipam.gateway == ip("10.200.7.1")


def test_allocate_is_idempotent_per_key(tmp_path):
    ipam = Ipam(tmp_path / "ipam.json", "10.200.7.0/24")
    assert ipam.allocate("a") == ipam.allocate("a")
    assert list(ipam.allocations()) == ["a"]


def test_released_address_is_reused(tmp_path):
    ipam = Ipam(tmp_path / "ipam.json", "10.200.7.0/24")
    first = ipam.allocate("a")
    ipam.allocate("b")
    assert ipam.release("a")["ip"] == str(first)
    assert ipam.release("a") is None
    assert ipam.allocate("c") == first


def test_live_addresses_are_never_handed_out(tmp_path):
    ipam = Ipam(tmp_path / "ipam.json", "10.200.7.0/24")
    live = {ip("10.200.7.2"), ip("10.200.7.3")}
    assert ipam.allocate("a", is_live=lambda candidate: candidate in live) == ip("10.200.7.4")


def test_state_survives_a_new_instance_and_keeps_fields(tmp_path):
    Ipam(tmp_path / "ipam.json", "10.200.7.0/24").allocate("a", host_ifname="pkx")
    again = Ipam(tmp_path / "ipam.json", "10.200.7.0/24")
    again.update("a", mac="02:00:00:00:00:01")
    assert again.get("a") == {"ip": "10.200.7.2", "host_ifname": "pkx", "mac": "02:00:00:00:00:01"}
    assert again.allocate("b") == ip("10.200.7.3")
    with pytest.raises(KeyError):
        again.update("nobody", mac="x")


def test_exhaustion_is_a_clear_error(tmp_path):
    ipam = Ipam(tmp_path / "ipam.json", "10.200.7.0/30")  # .1 gateway, .2 the only address
    ipam.allocate("a")
    with pytest.raises(PoolExhausted, match="10.200.7.0/30"):
        ipam.allocate("b")


def test_state_of_another_subnet_is_refused(tmp_path):
    Ipam(tmp_path / "ipam.json", "10.200.7.0/24").allocate("a")
    with pytest.raises(IpamError, match="10.200.7.0/24"):
        Ipam(tmp_path / "ipam.json", "10.200.8.0/24").allocate("b")


def test_corrupt_state_is_a_clear_error(tmp_path):
    (tmp_path / "ipam.json").write_text("{not json")
    with pytest.raises(IpamError, match="ipam.json"):
        Ipam(tmp_path / "ipam.json", "10.200.7.0/24").allocate("a")


@pytest.mark.parametrize("subnet", ["10.200.7.0/31", "300.1.1.0/24", "10.200.7.1/24", "nonsense"])
def test_bad_subnets_are_refused(tmp_path, subnet):
    with pytest.raises(ValueError):
        Ipam(tmp_path / "ipam.json", subnet)


def _allocate_many(args):
    state_file, prefix = args
    ipam = Ipam(state_file, "10.200.0.0/22")
    return [str(ipam.allocate(f"{prefix}-{i}")) for i in range(40)]


def test_concurrent_processes_never_collide(tmp_path):
    state_file = tmp_path / "ipam.json"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_allocate_many, [(state_file, f"p{n}") for n in range(4)])
    addresses = [a for chunk in results for a in chunk]
    assert len(addresses) == len(set(addresses)) == 160
    assert len(json.loads(state_file.read_text())["allocations"]) == 160
