"""The proxy's iptables backend on the real kernel: the node network namespace of
test_proxy_nft.py (a bridge with pod namespaces on it, an uplink), PKUBE chains written by
the IptablesProxier with iptables-restore inside it, real TCP and UDP through them.

Everything happens in namespaces the test makes and deletes in `finally` (the chains live in
the node namespace and go with it); the host's own iptables rules are never read or written.
The main paths run with both variants: iptables-nft (Debian's default `iptables`) and
iptables-legacy.
"""

from __future__ import annotations

import time

import pytest

from pkube.proxy import modes
from pkube.proxy.conntrack import Conntrack
from pkube.proxy.ipt import Iptables
from pkube.proxy.iptproxier import IptablesProxier
from pkube.proxy.rules import ProxyConfig
from tests.system.test_proxy_nft import Node, node_namespace, sh

pytestmark = pytest.mark.root

VARIANTS = ("iptables", "iptables-legacy")


@pytest.fixture
def node():
    with node_namespace() as n:
        yield n


def proxier(node: Node, command: str = "iptables") -> IptablesProxier:
    """An iptables proxier in `node` that has written its chains (as a starting proxy does)."""
    p = IptablesProxier(ProxyConfig(node_name="n1"), Iptables(command, netns=node.name), node.world_services.get,
                        lambda key: node.world_slices.get(key, []), lambda: list(node.world_services),
                        Conntrack(netns=node.name))
    assert p.sync_all().failed == []
    return p


def save(node: Node, command: str = "iptables") -> str:
    return node.run(f"{command}-save")


def pkube_lines(listing: str) -> list[str]:
    return [line for line in listing.splitlines() if "PKUBE" in line]


@pytest.mark.parametrize("command", VARIANTS)
def test_a_clusterip_and_a_nodeport_reach_every_endpoint(node, command):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    p = proxier(node, command)
    p.sync([node.put("web", "10.96.0.10", ["10.244.0.2", "10.244.0.3"], type="NodePort",
                     ports=[{"name": "http", "port": 80, "nodePort": 30080}])])
    from_pod = node.client("10.96.0.10", 80, count=30, netns=client)
    assert {line.split()[0] for line in from_pod} == {"a", "b"}
    assert {line.split()[1] for line in from_pod} == {"10.244.0.9"}         # a pod's source is kept
    assert {line.split()[0] for line in node.client("10.96.0.10", 80, count=30)} == {"a", "b"}
    for address in ("172.31.0.1", "10.244.0.1", "127.0.0.1"):
        assert {line.split()[0] for line in node.client(address, 30080, count=20)} == {"a", "b"}, address
    assert {line.split()[0] for line in node.client("172.31.0.1", 30080, count=20, netns=client)} == {"a", "b"}
    assert node.client("10.244.0.2", 8080, netns=client)[0].split()[0] == "a"      # pods still talk directly


@pytest.mark.parametrize("command", VARIANTS)
def test_endpoint_changes_take_effect_and_a_service_without_endpoints_refuses_at_once(node, command):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    p = proxier(node, command)
    key = node.put("web", "10.96.0.10", ["10.244.0.2", "10.244.0.3"])
    p.sync([key])
    node.put("web", "10.96.0.10", ["10.244.0.3"])
    p.sync([key])
    assert {line.split()[0] for line in node.client("10.96.0.10", 80, count=20, netns=client)} == {"b"}
    node.put("web", "10.96.0.10", [])
    assert p.sync([key]).failed == []
    started = time.monotonic()
    assert node.client("10.96.0.10", 80, count=3, netns=client) == ["ConnectionRefusedError"] * 3
    assert node.client("10.96.0.10", 80) == ["ConnectionRefusedError"]
    assert time.monotonic() - started < 5          # refused, not a 5 s connect timeout each
    assert not [line for line in save(node, command).splitlines() if line.startswith(":PKUBE-SVC")]


def test_a_change_to_one_service_leaves_the_other_services_chains_alone(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    p = proxier(node)
    p.sync([node.put("one", "10.96.0.10", ["10.244.0.2"]), node.put("two", "10.96.0.11", ["10.244.0.3"])])
    node.client("10.96.0.11", 80, count=5)

    def counted(listing: str) -> list[str]:        # two's rules, with their packet counters
        return [line for line in listing.splitlines() if '"default/two:http/tcp"' in line]
    before = counted(node.run("iptables-save", "-c"))
    assert any(not line.startswith("[0:") for line in before)
    p.sync([node.put("one", "10.96.0.10", ["10.244.0.3"])])
    assert counted(node.run("iptables-save", "-c")) == before           # not rewritten: counters kept
    assert [line.split()[0] for line in node.client("10.96.0.10", 80)] == ["b"]


def test_udp_is_balanced_and_refused_without_endpoints(node):
    node.pod("a", "10.244.0.2")
    node.pod("b", "10.244.0.3")
    client = node.pod("c", "10.244.0.9", serve=False)
    p = proxier(node)
    p.sync([node.put("dns", "10.96.0.53", ["10.244.0.2", "10.244.0.3"], protocol="UDP")])
    answers = node.client("10.96.0.53", 80, count=30, proto="udp", netns=client)
    assert {line.split()[0] for line in answers} == {"a", "b"}
    p.sync([node.put("empty", "10.96.0.54", [], protocol="UDP")])
    assert node.client("10.96.0.54", 80, proto="udp", netns=client) == ["ConnectionRefusedError"]


def test_hairpin_session_affinity_and_local_policy(node):
    for short, ip in (("a", "10.244.0.2"), ("b", "10.244.0.3"), ("d", "10.244.0.4")):
        node.pod(short, ip)
    client = node.pod("c", "10.244.0.9", serve=False)
    p = proxier(node)
    p.sync([node.put("self", "10.96.0.20", ["10.244.0.2"]),
            node.put("sticky", "10.96.0.30", ["10.244.0.2", "10.244.0.3", "10.244.0.4"], sessionAffinity="ClientIP")])
    assert node.client("10.96.0.20", 80, netns=f"{node.name}-a") == ["a 10.244.0.1"]      # masqueraded
    assert len({line.split()[0] for line in node.client("10.96.0.30", 80, count=20, netns=client)}) == 1
    key = node.put("local", "10.96.0.40", ["10.244.0.2"], type="NodePort", externalTrafficPolicy="Local",
                   ports=[{"name": "http", "port": 80, "nodePort": 30090}])
    node.world_slices[key][0]["endpoints"][0]["nodeName"] = "elsewhere"
    p.sync([key])
    assert "--dport 30090 -j DROP" in save(node)
    assert [line.split()[0] for line in node.client("10.96.0.40", 80, netns=client)] == ["a"]   # ClusterIP: all


def test_a_restart_removes_stale_chains_and_rules_gone_behind_its_back_are_noticed(node):
    node.pod("a", "10.244.0.2")
    first = proxier(node)
    first.sync([node.put("old", "10.96.0.50", ["10.244.0.2"]), node.put("kept", "10.96.0.51", ["10.244.0.2"])])
    del node.world_services["default/old"]          # deleted while no proxy ran
    second = proxier(node)
    listing = save(node)
    assert "10.96.0.50" not in listing and '"default/old:' not in listing
    assert len([line for line in listing.splitlines() if line.startswith(":PKUBE-SVC")]) == 1
    assert [line.split()[0] for line in node.client("10.96.0.51", 80)] == ["a"]
    assert second.in_place()
    node.run("iptables", "-t", "nat", "-F", "PREROUTING")
    assert not second.in_place()
    second.sync_all()
    assert second.in_place() and save(node).count("-j PKUBE-SERVICES") == 5       # 2 nat + 3 filter, once each


def test_cleanup_removes_every_chain_and_jump_of_both_variants_and_a_start_the_other_modes_rules(node):
    node.pod("a", "10.244.0.2")
    for command in VARIANTS:
        proxier(node, command).sync([node.put("web", "10.96.0.10", ["10.244.0.2"], type="NodePort",
                                              ports=[{"name": "http", "port": 80, "nodePort": 30080}])])
        assert pkube_lines(save(node, command))
    node.proxier()                                   # the nftables table too, as an earlier run in that mode
    assert modes.cleanup("pkube-proxy", netns=node.name, keep=modes.IPTABLES) == []   # at start in iptables mode
    assert "pkube-proxy" not in node.run("nft", "list", "tables") and pkube_lines(save(node))
    node.proxier()
    assert modes.cleanup("pkube-proxy", netns=node.name, keep=modes.NFTABLES) == []
    assert "pkube-proxy" in node.run("nft", "list", "tables") and not pkube_lines(save(node))
    assert modes.cleanup("pkube-proxy", netns=node.name) == []
    for command in VARIANTS:
        assert pkube_lines(save(node, command)) == [], command
    assert "pkube-proxy" not in node.run("nft", "list", "tables")
    assert modes.cleanup("pkube-proxy", netns=node.name) == []                 # again: nothing to do


def test_auto_mode_picks_nftables_where_it_works(node):
    mode, ipt = modes.choose(modes.AUTO, netns=node.name)
    assert (mode, ipt) == (modes.NFTABLES, None)
    mode, ipt = modes.choose(modes.IPTABLES, netns=node.name)
    assert mode == modes.IPTABLES and ipt.command == "iptables"
    assert sh("ip", "netns", "list")          # the host's rules were not read: only the namespace's
