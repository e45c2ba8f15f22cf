"""The proxier's bookkeeping against a recording nft: incremental transactions, clashes,
hairpin reference counts, failures that do not hold back other Services."""

from __future__ import annotations

import logging

from pkube.proxy.nft import NftError
from pkube.proxy.proxier import Proxier
from pkube.proxy.rules import ProxyConfig
from tests.unit.test_proxy_rules import endpoint, endpoint_slice, service


class RecordingNft:
    """Keeps each applied script; refuses scripts containing any of `refuse`."""

    def __init__(self):
        self.scripts: list[str] = []
        self.refuse: list[str] = []

    def apply(self, script: str) -> None:
        if any(word in script for word in self.refuse):
            raise NftError("nft -f -: Error: refused")
        self.scripts.append(script)


class World:
    def __init__(self):
        self.services: dict[str, dict] = {}
        self.slices: dict[str, list[dict]] = {}
        self.nft = RecordingNft()
        self.proxier = Proxier(ProxyConfig(table="t", node_name="n1"), self.nft, self.services.get,
                               lambda key: self.slices.get(key, []), lambda: list(self.services))

    def put(self, name: str, ip: str, ips: list[str], ts: str = "2026-01-01T00:00:00Z", **spec) -> str:
        svc = service(name, ip, **spec)
        svc["metadata"]["creationTimestamp"] = ts
        self.services[f"default/{name}"] = svc
        self.slices[f"default/{name}"] = [endpoint_slice(name, [endpoint(i) for i in ips])]
        return f"default/{name}"


def test_a_change_to_one_service_writes_only_that_service():
    world = World()
    world.put("a", "10.96.0.1", ["10.244.0.2"])
    world.put("b", "10.96.0.2", ["10.244.0.3"])
    world.proxier.sync_all()
    world.put("a", "10.96.0.1", ["10.244.0.2", "10.244.0.4"])
    assert world.proxier.sync(["default/a"]).failed == []
    script = world.nft.scripts[-1]
    assert "service-default/a/" in script and "default/b" not in script
    assert "add element ip t hairpin { 10.244.0.4 . 10.244.0.4 }" in script
    assert world.proxier.sync(["default/a"]).failed == [] and len(world.nft.scripts) == 2   # nothing to do


def test_a_shared_endpoint_ip_stays_in_hairpin_until_its_last_service_goes_and_is_pruned():
    world = World()
    a, b = world.put("a", "10.96.0.1", ["10.244.0.2"]), world.put("b", "10.96.0.2", ["10.244.0.2"])
    world.proxier.sync([a, b])
    assert world.nft.scripts[-1].count("add element ip t hairpin { 10.244.0.2 . 10.244.0.2 }") == 1
    del world.services[a]
    world.proxier.sync([a])
    world.proxier.prune()
    assert "hairpin" not in world.nft.scripts[-1]
    del world.services[b]
    world.proxier.sync([b])
    assert "hairpin" not in world.nft.scripts[-1]          # deletes wait for prune
    world.proxier.prune()
    assert world.nft.scripts[-1] == "delete element ip t hairpin { 10.244.0.2 . 10.244.0.2 }\n"
    world.put("c", "10.96.0.3", ["10.244.0.2"])
    world.proxier.sync(["default/c"])
    assert "add element ip t hairpin { 10.244.0.2 . 10.244.0.2 }" in world.nft.scripts[-1]


def test_a_nodeport_clash_is_logged_with_both_names_and_resolved_when_the_owner_goes(caplog):
    world = World()
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    a = world.put("a", "10.96.0.1", ["10.244.0.2"], ports=ports, type="NodePort")
    b = world.put("b", "10.96.0.2", ["10.244.0.3"], ts="2026-01-02T00:00:00Z", ports=ports, type="NodePort")
    with caplog.at_level(logging.ERROR):
        world.proxier.sync_all()
    assert "Service default/b: nodePort 30080/tcp is already used by Service default/a" in caplog.text
    assert "tcp . 30080 : goto external-default/b/" not in world.nft.scripts[-1]
    assert "10.96.0.2 . tcp . 80 : goto service-default/b/" in world.nft.scripts[-1]      # the rest of b works
    del world.services[a]
    assert world.proxier.sync([a]).unblocked == [b]
    world.proxier.sync([b])
    assert "add element ip t service-nodeports { tcp . 30080 : goto external-default/b/tcp/http }" in world.nft.scripts[-1]


def test_a_failing_service_does_not_hold_back_the_others(caplog):
    world = World()
    a, b = world.put("a", "10.96.0.1", ["10.244.0.2"]), world.put("b", "10.96.0.2", ["10.244.0.3"])
    world.nft.refuse = ["service-default/b/"]
    with caplog.at_level(logging.ERROR):
        result = world.proxier.sync([a, b])
    assert result.failed == [b]
    assert "Service default/b: rules not applied" in caplog.text
    assert "service-default/a/" in world.nft.scripts[-1]
    assert set(world.proxier.programmed) == {a}
    world.nft.refuse = []
    assert world.proxier.sync([b]).failed == []


class RecordingConntrack:
    def __init__(self):
        self.deleted = []

    def delete_flows(self, flows):
        self.deleted.append(flows)
        return len(flows)


def test_udp_flows_of_a_gone_endpoint_are_handed_to_conntrack_and_tcp_ones_are_not():
    world = World()
    world.proxier.conntrack = RecordingConntrack()
    udp = [{"name": "http", "port": 53, "protocol": "UDP", "nodePort": 30053}]
    key = world.put("dns", "10.96.0.10", ["10.244.0.2", "10.244.0.3"], ports=udp, type="NodePort")
    world.slices[key][0]["ports"][0]["protocol"] = "UDP"
    tcp = world.put("web", "10.96.0.11", ["10.244.0.2", "10.244.0.3"])
    world.proxier.sync([key, tcp])
    world.slices[key][0]["endpoints"].pop()
    world.slices[tcp][0]["endpoints"].pop()
    world.proxier.sync([key, tcp])
    [flows] = world.proxier.conntrack.deleted
    assert {(f.front_ip, f.front_port, f.endpoint_ip, f.endpoint_port) for f in flows} == {
        ("10.96.0.10", 53, "10.244.0.3", 8080), ("", 30053, "10.244.0.3", 8080)}


def test_an_unprogrammable_service_is_logged_and_gets_no_rules(caplog):
    world = World()
    bad = world.put("bad", "10.96.0.300", ["10.244.0.2"])
    with caplog.at_level(logging.ERROR):
        world.proxier.sync([bad])
    assert "Service default/bad: bad clusterIP" in caplog.text
    assert world.proxier.programmed == {} and world.nft.scripts == []


def test_a_rebuild_nft_refuses_falls_back_to_the_bare_table_and_one_service_at_a_time():
    world = World()
    a, b = world.put("a", "10.96.0.1", ["10.244.0.2"]), world.put("b", "10.96.0.2", ["10.244.0.3"])
    world.nft.refuse = ["service-default/b/"]
    result = world.proxier.sync_all()
    assert result.failed == [b]
    assert "service-default/" not in world.nft.scripts[0] and "add table ip t" in world.nft.scripts[0]
    assert set(world.proxier.programmed) == {a}
