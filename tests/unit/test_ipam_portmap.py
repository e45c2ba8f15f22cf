"""Port mappings and the firewall rule text (pure: no nft or iptables is run here)."""

from __future__ import annotations

import ipaddress

import pytest

from pkube.runtime.network import mac_for, veth_address, veth_name
from pkube.runtime.portmap import (
    IptablesFirewall,
    NftFirewall,
    PortMapping,
    container_chain,
    find_conflict,
    ipt_base_rules,
    ipt_container_chain,
    ipt_dnat_rule,
    jump_handles,
    make_firewall,
    nft_base_in_place,
    nft_base_script,
    nft_chain_rules,
    nft_publish_script,
    nft_unpublish_script,
)


@pytest.mark.parametrize("text,expected", [
    ("8080:80", PortMapping(8080, 80)),
    ("5353:53/udp", PortMapping(5353, 53, "udp")),
    ("127.0.0.1:8080:80/tcp", PortMapping(8080, 80, "tcp", "127.0.0.1")),
])
def test_parse_docker_port_syntax(text, expected):
    assert PortMapping.parse(text) == expected


@pytest.mark.parametrize("text", ["80", "a:80", "8080:80/sctp", "0:80", "8080:70000", "x.y:1:2", "1:2:3:4"])
def test_bad_port_mappings_are_refused_with_the_reason(text):
    with pytest.raises(ValueError, match="port|protocol|IP"):
        PortMapping.parse(text)


def test_a_mapping_bound_to_every_address_has_no_daddr_match():
    assert PortMapping(8080, 80, host_ip="0.0.0.0").bound_ip is None
    assert PortMapping(8080, 80, host_ip="127.0.0.1").bound_ip == "127.0.0.1"


def test_container_chains_are_stable_and_distinct():
    assert container_chain("abc") == container_chain("abc")
    assert container_chain("abc") != container_chain("abd")
    assert len(ipt_container_chain("pkube", "abc")) <= 28


def test_base_script_hooks_localhost_masquerade_and_hairpin():
    script = nft_base_script("pkube", "pkube0", "10.88.0.0/16")
    assert "add chain ip pkube output { type nat hook output priority -100; policy accept; }" in script
    assert "add rule ip pkube prerouting fib daddr type local jump ports" in script
    assert "add rule ip pkube output fib daddr type local jump ports" in script
    assert 'ip saddr 10.88.0.0/16 oifname != "pkube0" masquerade' in script
    assert 'ip saddr 127.0.0.0/8 oifname "pkube0" masquerade' in script
    assert 'ip saddr 10.88.0.0/16 oifname "pkube0" ct status dnat masquerade' in script
    assert "flush chain ip pkube ports" not in script  # published containers survive ensure()


def test_egress_to_the_cluster_pod_network_keeps_the_pod_address():
    script = nft_base_script("pkubelet", "pkube-pods", "10.244.1.0/24", "10.244.0.0/16")
    assert 'ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 oifname != "pkube-pods" masquerade' in script
    rules = ipt_base_rules("pkubelet", "pkube-pods", "10.244.1.0/24", "10.244.0.0/16")
    assert ["nat", "PKUBELET-POST", "-s", "10.244.1.0/24", "!", "-d", "10.244.0.0/16", "!", "-o", "pkube-pods",
            "-j", "MASQUERADE"] in rules


def test_publish_script_replaces_the_chain_and_its_jump():
    mappings = [PortMapping(8080, 80), PortMapping(5353, 53, "udp", "127.0.0.1")]
    script = nft_publish_script("pkube", "ctr1", "10.88.0.2", mappings, stale_handles=[7])
    chain = container_chain("ctr1")
    assert f"flush chain ip pkube {chain}" in script
    assert "delete rule ip pkube ports handle 7" in script
    assert f"add rule ip pkube {chain} tcp dport 8080 dnat to 10.88.0.2:80" in script
    assert f"add rule ip pkube {chain} ip daddr 127.0.0.1 udp dport 5353 dnat to 10.88.0.2:53" in script
    assert script.rstrip().endswith(f'add rule ip pkube ports jump {chain} comment "ctr1"')


def test_unpublish_script_deletes_only_that_chain():
    script = nft_unpublish_script("pkube", "ctr1", [3, 9])
    chain = container_chain("ctr1")
    assert script.splitlines() == [
        "delete rule ip pkube ports handle 3", "delete rule ip pkube ports handle 9",
        f"add chain ip pkube {chain}", f"flush chain ip pkube {chain}", f"delete chain ip pkube {chain}"]


def test_jump_handles_reads_nft_json():
    listing = {"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"chain": {"family": "ip", "table": "pkube", "name": "ports", "handle": 1}},
        {"rule": {"chain": "ports", "handle": 11, "expr": [{"jump": {"target": "c_aaa"}}]}},
        {"rule": {"chain": "ports", "handle": 12, "expr": [{"jump": {"target": "c_bbb"}}]}},
        {"rule": {"chain": "ports", "handle": 13, "expr": [{"jump": {"target": "c_aaa"}}]}},
    ]}
    assert jump_handles(listing, "c_aaa") == [11, 13]
    assert jump_handles(listing, "c_zzz") == []


def test_iptables_rules_mirror_the_nft_layout():
    rules = ipt_base_rules("pkube", "pkube0", "10.88.0.0/16")
    assert ["nat", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "PKUBE-PORTS"] in rules
    assert ["nat", "PKUBE-POST", "-s", "127.0.0.0/8", "-o", "pkube0", "-j", "MASQUERADE"] in rules
    assert all("-i" not in rule for rule in rules if rule[1] == "PKUBE-POST")  # -i is invalid there
    assert ipt_dnat_rule("10.88.0.2", PortMapping(8080, 80, "udp", "127.0.0.1")) == [
        "-d", "127.0.0.1", "-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.88.0.2:80"]


def test_make_firewall_picks_the_backend(monkeypatch):
    import shutil   # portmap imports it where it looks for the commands
    monkeypatch.setattr(shutil, "which", lambda cmd: None if cmd == "nft" else f"/usr/sbin/{cmd}")
    assert isinstance(make_firewall("pkube", "pkube0", "10.88.0.0/16"), IptablesFirewall)
    assert isinstance(make_firewall("pkube", "pkube0", "10.88.0.0/16", "nft"), NftFirewall)
    with pytest.raises(ValueError):
        make_firewall("pkube", "pkube0", "10.88.0.0/16", "pf")
    with pytest.raises(ValueError, match="table"):
        make_firewall("bad table;", "pkube0", "10.88.0.0/16")


def test_veth_and_mac_are_derived_from_the_address():
    ip = ipaddress.IPv4Address("10.88.0.2")
    assert veth_name(ip) == "pk0a580002"
    assert mac_for(ip) == "0a:58:0a:58:00:02"
    assert veth_address("pk0a580002") == ip
    assert [veth_address(name) for name in ("pkube0", "pk0a58000z", "pk0a5800021", "eth0")] == [None] * 4


def test_conflicts_between_host_ports():
    web = [PortMapping(8080, 80)]
    assert find_conflict([PortMapping(8080, 81)], {"web": web}) == \
        "host port 0.0.0.0:8080/tcp is already allocated (by web)"
    assert find_conflict([PortMapping(8080, 80, "udp")], {"web": web}) is None
    assert find_conflict([PortMapping(8081, 80)], {"web": web}) is None
    local = [PortMapping(9000, 80, host_ip="127.0.0.1")]
    assert find_conflict([PortMapping(9000, 80, host_ip="127.0.0.2")], {"l": local}) is None
    assert find_conflict([PortMapping(9000, 80)], {"l": local}) is not None
    assert "twice" in find_conflict([PortMapping(7000, 1), PortMapping(7000, 2)], {})


LISTING = """table ip pkube {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump ports
	}

	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local jump ports
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.88.0.0/16 oifname != "pkube0" masquerade
		ip saddr 127.0.0.0/8 oifname "pkube0" masquerade
		ip saddr 10.88.0.0/16 oifname "pkube0" ct status dnat masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "pkube0" accept
		oifname "pkube0" accept
	}

	chain ports {
		jump c_ba7816bf8f01 comment "abc"
	}

	chain c_ba7816bf8f01 {
		tcp dport 8080 dnat to 10.88.0.2:80
	}
}
"""


def test_ensure_skips_the_rewrite_only_when_the_base_rules_are_exact():
    assert nft_chain_rules(LISTING)["ports"] == ['jump c_ba7816bf8f01 comment "abc"']
    assert nft_base_in_place(LISTING, "pkube0", "10.88.0.0/16")
    assert not nft_base_in_place(LISTING, "pkube1", "10.88.0.0/16")
    assert not nft_base_in_place(LISTING.replace("\t\tiifname", "\t\taccept\n\t\tiifname"), "pkube0", "10.88.0.0/16")
    assert not nft_base_in_place("", "pkube0", "10.88.0.0/16")


def test_a_key_cannot_break_out_of_the_nft_comment():
    script = nft_publish_script("pkube", 'x" ; flush ruleset ; "', "10.88.0.2", [], [])
    assert 'comment "x____flush_ruleset____"' in script
    assert "flush ruleset" not in script
