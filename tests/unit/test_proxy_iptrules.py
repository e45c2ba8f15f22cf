"""The iptables backend's rule generation and partial syncs: Services and EndpointSlices in,
iptables-restore text out (no iptables run; tests/system/test_proxy_iptables.py runs it)."""

from __future__ import annotations

import asyncio

import pytest

from pkube.client.fake import FakeApi
from pkube.proxy import modes
from pkube.proxy.backend import BackendError
from pkube.proxy.ipt import Iptables
from pkube.proxy.iptproxier import IptablesProxier
from pkube.proxy.iptrules import (FILTER, NAT, NODEPORTS, SERVICES, chain_name, diff_text, full_text,
                                  service_rules)
from pkube.proxy.rules import ProxyConfig
from pkube.proxy.server import ProxyServer
from tests.unit.test_proxy_rules import endpoint, endpoint_slice, service

CONFIG = ProxyConfig(table="t", cluster_cidr="10.244.0.0/16", node_name="n1")
SVC, EXT, SVL = (chain_name(kind, "default/web/tcp/http") for kind in ("SVC", "EXT", "SVL"))
COMMENT = '-m comment --comment "default/web:http/tcp"'


def sep(ip: str, port: int = 8080) -> str:
    return chain_name("SEP", "default/web/tcp/http", f"{ip}:{port}")


def rules_of(ips, node="n1", **spec):
    return service_rules(service(**spec), [endpoint_slice(endpoints=[endpoint(ip, node=node) for ip in ips])], CONFIG)


def test_a_clusterip_spreads_new_connections_with_statistic_over_the_ready_endpoints():
    rules = service_rules(service(), [endpoint_slice(endpoints=[endpoint("10.244.0.2"), endpoint("10.244.0.3"),
                                                                endpoint("10.244.0.4"),
                                                                endpoint("10.244.0.5", ready=False)])], CONFIG)
    assert rules.chains[(NAT, SVC)] == (
        "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 ! -s 10.244.0.0/16 -j PKUBE-MARK-MASQ",
        f"-m statistic --mode random --probability 0.3333333333 -j {sep('10.244.0.2')}",
        f"-m statistic --mode random --probability 0.5000000000 -j {sep('10.244.0.3')}",
        f"-j {sep('10.244.0.4')}")
    assert rules.chains[(NAT, sep("10.244.0.2"))] == (
        "-s 10.244.0.2/32 -j PKUBE-MARK-MASQ",                     # hairpin
        "-p tcp -j DNAT --to-destination 10.244.0.2:8080")
    assert (NAT, sep("10.244.0.5")) not in rules.chains
    assert rules.entries() == {(NAT, SERVICES, f"{COMMENT} -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j {SVC}")}


def test_chain_names_fit_iptables_limit_and_are_stable():
    assert len(sep("255.255.255.255", 65535)) <= 28
    assert SVC.startswith("PKUBE-SVC-") and len(SVC) == 26 and SVC == chain_name("SVC", "default/web/tcp/http")


def test_no_endpoint_rejects_in_filter_on_the_clusterip_and_the_nodeport_udp_with_icmp():
    rules = rules_of([], ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}], type="NodePort")
    comment = '-m comment --comment "default/web:dns/udp"'
    assert rules.chains == {}
    assert rules.entries() == {
        (FILTER, SERVICES, f"{comment} -d 10.96.0.10/32 -p udp -m udp --dport 53 -j REJECT "
                           "--reject-with icmp-port-unreachable"),
        (FILTER, SERVICES, f"{comment} -m addrtype --dst-type LOCAL -p udp -m udp --dport 30053 -j REJECT "
                           "--reject-with icmp-port-unreachable")}
    assert set(rules.elements) == {("service-ips", "10.96.0.10 . udp . 53"), ("service-nodeports", "udp . 30053")}
    tcp = rules_of([])
    assert "REJECT --reject-with tcp-reset" in next(iter(tcp.entries()))[2]


def test_a_nodeport_is_masqueraded_and_sent_to_the_service_chain():
    rules = rules_of(["10.244.0.2"], type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])
    assert rules.chains[(NAT, EXT)] == ("-j PKUBE-MARK-MASQ", f"-j {SVC}")
    assert (NAT, NODEPORTS, f"{COMMENT} -p tcp -m tcp --dport 30080 -j {EXT}") in rules.entries()


def test_external_traffic_policy_local_uses_this_nodes_endpoints_and_drops_without_one():
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    here = service_rules(service(ports=ports, type="NodePort", externalTrafficPolicy="Local"),
                         [endpoint_slice(endpoints=[endpoint("10.244.0.2"), endpoint("10.244.1.2", node="n2")])],
                         CONFIG)
    assert here.chains[(NAT, EXT)] == (f"-s 10.244.0.0/16 -j {SVC}", "-m addrtype --src-type LOCAL -j PKUBE-MARK-MASQ",
                                       f"-m addrtype --src-type LOCAL -j {SVC}", f"-j {SVL}")
    assert here.chains[(NAT, SVL)] == (f"-j {sep('10.244.0.2')}",)
    elsewhere = rules_of(["10.244.1.2"], node="n2", ports=ports, type="NodePort", externalTrafficPolicy="Local")
    assert (NAT, SVL) not in elsewhere.chains and elsewhere.chains[(NAT, EXT)][-1] == f"-m addrtype --src-type LOCAL -j {SVC}"
    assert (FILTER, SERVICES, f"{COMMENT} -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j DROP") \
        in elsewhere.entries()


def test_session_affinity_checks_recent_clients_first_and_records_them_at_dnat():
    rules = rules_of(["10.244.0.2", "10.244.0.3"], sessionAffinity="ClientIP",
                     sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    a = sep("10.244.0.2")
    assert rules.chains[(NAT, SVC)][1] == (f"-m recent --name {a} --mask 255.255.255.255 --rsource "
                                           f"--rcheck --seconds 60 --reap -j {a}")
    assert rules.chains[(NAT, a)][1] == (f"-p tcp -m recent --name {a} --mask 255.255.255.255 --rsource "
                                         f"--set -j DNAT --to-destination 10.244.0.2:8080")


def test_full_text_writes_every_chain_and_deletes_stale_pkube_chains_only():
    text = full_text({"default/web": rules_of(["10.244.0.2"])},
                     existing={(NAT, "PKUBE-SVC-GONE"), (NAT, "KUBE-SERVICES"), (NAT, "PREROUTING")})
    nat, filter_ = text.split("COMMIT\n")[:2]
    assert nat.startswith("*nat\n") and filter_.startswith("*filter\n")
    assert ":PKUBE-SVC-GONE - [0:0]" in nat and nat.endswith("-X PKUBE-SVC-GONE\n")
    assert ":KUBE-SERVICES" not in text and "PREROUTING" not in text
    service_rules_at = nat.index(f"-A PKUBE-SERVICES {COMMENT}")
    assert nat.index("-j PKUBE-NODEPORTS") > service_rules_at          # the NodePort jump is last
    assert ":PKUBE-FIREWALL - [0:0]" in filter_ and "-A PKUBE-MARK-MASQ -j MARK --or-mark 0x4000" in nat


def test_an_endpoint_change_rewrites_that_services_chains_only():
    old_web, other = rules_of(["10.244.0.2", "10.244.0.3"]), rules_of(["10.244.0.9"], name="other", ip="10.96.0.11")
    new_web = rules_of(["10.244.0.2", "10.244.0.4"])
    text = diff_text([(old_web, new_web)])
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT" and len(lines) == 2 + 3 + 1 + 3 + 2
    assert set(lines[1:4]) == {f":{SVC} - [0:0]", f":{sep('10.244.0.4')} - [0:0]", f":{sep('10.244.0.3')} - [0:0]"}
    assert lines[4] == f"-X {sep('10.244.0.3')}"
    assert set(lines[5:-1]) == {*(f"-A {SVC} {rule}" for rule in new_web.chains[(NAT, SVC)]),
                                *(f"-A {sep('10.244.0.4')} {rule}" for rule in new_web.chains[(NAT, sep("10.244.0.4"))])}
    assert sep("10.244.0.2") not in text.replace(f"-j {sep('10.244.0.2')}", "")      # unchanged: not rewritten
    assert not any(chain in text for _t, chain in other.chains)
    assert diff_text([(new_web, new_web)]) == ""


def test_a_service_losing_its_endpoints_swaps_its_shared_rules_and_deletes_its_chains():
    old, new = rules_of(["10.244.0.2"]), rules_of([])
    lines = diff_text([(old, new)]).splitlines()
    nat, filter_ = lines[:lines.index("COMMIT") + 1], lines[lines.index("COMMIT") + 1:]
    delete = f"-D PKUBE-SERVICES {COMMENT} -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j {SVC}"
    assert nat.index(delete) < nat.index(f"-X {SVC}")                   # the reference goes first
    assert f":{SVC} - [0:0]" in nat and f"-X {sep('10.244.0.2')}" in nat
    assert filter_ == ["*filter", f"-I PKUBE-SERVICES 1 {COMMENT} -d 10.96.0.10/32 -p tcp -m tcp --dport 80 "
                                  "-j REJECT --reject-with tcp-reset", "COMMIT"]
    deleted = diff_text([(new, None)]).splitlines()
    assert deleted == ["*filter", "-D PKUBE-SERVICES " + filter_[1].split(" 1 ", 1)[1], "COMMIT"]


class RecordingIptables:
    """Keeps each restore input; refuses inputs holding any of `refuse`; lists only the
    built-in chains' rules that inputs inserted (-I)."""

    command = "iptables"

    def __init__(self):
        self.inputs: list[str] = []
        self.refuse: list[str] = []
        self.rules: set = set()

    def restore(self, text: str) -> None:
        if any(word in text for word in self.refuse):
            raise BackendError("iptables-restore: line 3 failed")
        self.inputs.append(text)
        table = ""
        for line in text.splitlines():
            table = line[1:] if line.startswith("*") else table
            if line.startswith("-I ") and line.split()[1] in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "FORWARD"):
                self.rules.add((table, line.split()[1], line.split(" 1 ", 1)[1]))

    def save(self, table: str) -> str:
        return "".join(f"-A {c} {rule}\n" for t, c, rule in sorted(self.rules) if t == table)

    def has_rule(self, table, chain, rule) -> bool:
        return (table, chain, rule) in self.rules


def make_proxier():
    services, slices, ipt = {}, {}, RecordingIptables()
    proxier = IptablesProxier(CONFIG, ipt, services.get, lambda key: slices.get(key, []), lambda: list(services))

    def put(name, ip, ips):
        services[f"default/{name}"] = service(name, ip)
        slices[f"default/{name}"] = [endpoint_slice(name, [endpoint(i) for i in ips])]
        return f"default/{name}"
    return proxier, ipt, put


def test_the_proxier_writes_everything_once_then_only_the_changed_service_and_inserts_jumps_once():
    proxier, ipt, put = make_proxier()
    put("a", "10.96.0.1", ["10.244.0.2"])
    put("b", "10.96.0.2", ["10.244.0.3"])
    assert not proxier.in_place()
    proxier.sync_all()
    assert "10.96.0.1/32" in ipt.inputs[0] and "10.96.0.2/32" in ipt.inputs[0]
    assert ipt.inputs[0].count("-I ") == 7 and len(ipt.rules) == 7 and proxier.in_place()
    proxier.sync_all()
    assert "-I " not in ipt.inputs[1]                        # listed: not inserted twice
    put("a", "10.96.0.1", ["10.244.0.4"])
    assert proxier.sync(["default/a"]).failed == []
    assert "10.244.0.4" in ipt.inputs[-1] and "default/b" not in ipt.inputs[-1]
    assert proxier.sync(["default/a"]).failed == [] and len(ipt.inputs) == 3       # nothing to do


def test_a_refused_partial_sync_is_followed_by_a_full_one():
    proxier, ipt, put = make_proxier()
    put("a", "10.96.0.1", ["10.244.0.2"])
    proxier.sync_all()
    put("a", "10.96.0.1", ["10.244.0.5"])
    ipt.refuse = ["-D PKUBE"]                              # a rule someone deleted: -D fails
    assert proxier.sync(["default/a"]).failed == []
    assert ipt.inputs[-1].startswith("*nat\n") and "-A PKUBE-NODEPORTS" not in ipt.inputs[-1]
    assert "10.244.0.5" in ipt.inputs[-1] and "-D " not in ipt.inputs[-1]


def test_auto_mode_falls_back_to_iptables_only_where_nftables_does_not_work(monkeypatch):
    legacy = Iptables("iptables-legacy")
    monkeypatch.setattr(modes, "nft_works", lambda netns=None: True)
    monkeypatch.setattr(modes, "working_iptables", lambda netns=None: legacy)
    assert modes.choose(modes.AUTO) == (modes.NFTABLES, None)
    assert modes.choose(modes.IPTABLES) == (modes.IPTABLES, legacy)
    monkeypatch.setattr(modes, "nft_works", lambda netns=None: False)
    assert modes.choose(modes.AUTO) == (modes.IPTABLES, legacy)
    with pytest.raises(BackendError, match="apt-get install nftables"):
        modes.choose(modes.NFTABLES)
    monkeypatch.setattr(modes, "working_iptables", lambda netns=None: None)
    with pytest.raises(BackendError, match="nftables nor iptables works here"):
        modes.choose(modes.AUTO)


def test_the_server_drives_the_iptables_backend_and_rewrites_rules_flushed_behind_its_back():
    ipt = RecordingIptables()
    server = ProxyServer(FakeApi(), CONFIG, backend=lambda cfg, *reads: modes.make_backend(modes.IPTABLES, ipt, cfg,
                                                                                             *reads))
    server.proxier.conntrack = None
    server.service_informer.apply_event("ADDED", service("web"))
    server.slice_informer.apply_event("ADDED", endpoint_slice("web", [endpoint("10.244.0.2")]))

    async def scenario():
        await server.rebuild()
        server.slice_informer.apply_event("MODIFIED", endpoint_slice("web", [endpoint("10.244.0.3")]))
        ipt.rules.clear()                    # iptables -t nat -F; the check comes with the next round
        server.queue.add("")
        server.queue.shutdown()
        await server.run_rounds()
    asyncio.run(scenario())
    assert isinstance(server.proxier, IptablesProxier)
    assert f"-A PKUBE-SERVICES {COMMENT}" in ipt.inputs[0] and "-I PREROUTING 1" in ipt.inputs[0]
    assert "10.244.0.3:8080" in ipt.inputs[1] and "-I PREROUTING" not in ipt.inputs[1]     # the change alone
    assert "-I PREROUTING 1" in ipt.inputs[2] and server.proxier.in_place()                # then a full write
