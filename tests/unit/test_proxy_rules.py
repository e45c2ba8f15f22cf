"""The proxy's rule generation: Services and EndpointSlices in, nft text out (no nft run)."""

from __future__ import annotations

import pytest

from pkube.proxy.model import SERVICE_NAME_LABEL, port_endpoints, service_ports, usable
from pkube.proxy.rules import ProxyConfig, Rules, diff_lines, full_script, hairpin_lines, service_rules

CONFIG = ProxyConfig(table="t", cluster_cidr="10.244.0.0/16", node_name="n1")


def service(name="web", ip="10.96.0.10", ports=None, **spec) -> dict:
    ports = ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http"}]
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def endpoint(ip, ready=True, node="n1", **conditions) -> dict:
    return {"addresses": [ip], "conditions": {"ready": ready, **conditions}, "nodeName": node}


def endpoint_slice(name="web", endpoints=(), ports=None, address_type="IPv4") -> dict:
    ports = ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]
    return {"metadata": {"name": f"{name}-abc", "namespace": "default", "labels": {SERVICE_NAME_LABEL: name}},
            "addressType": address_type, "ports": ports, "endpoints": list(endpoints)}


def rules_text(rules: Rules) -> str:
    return "\n".join(diff_lines("t", None, rules))


def test_a_clusterip_balances_over_ready_endpoints_with_the_named_target_port():
    rules = service_rules(service(), [endpoint_slice(endpoints=[endpoint("10.244.0.3"), endpoint("10.244.0.2"),
                                                                endpoint("10.244.0.4", ready=False)])], CONFIG)
    chain = rules.chains["service-default/web/tcp/http"]
    assert chain[-1] == ("meta l4proto tcp dnat ip addr . port to numgen random mod 2 "
                         "map { 0 : 10.244.0.2 . 8080, 1 : 10.244.0.3 . 8080 }")
    assert "ip saddr != 10.244.0.0/16 jump mark-for-masquerade" in chain[0]
    assert rules.elements == {("service-ips", "10.96.0.10 . tcp . 80"): "goto service-default/web/tcp/http"}
    assert rules.hairpin == {"10.244.0.2", "10.244.0.3"}


def test_one_endpoint_is_a_plain_dnat_and_udp_is_udp():
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}])
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.9")],
                                               ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])], CONFIG)
    assert rules.chains["service-default/web/udp/dns"][-1] == "meta l4proto udp dnat to 10.244.0.9:5353"
    assert ("service-ips", "10.96.0.10 . udp . 53") in rules.elements


def test_no_ready_endpoint_rejects_at_once_on_the_clusterip_and_the_nodeport():
    svc = service(ports=[{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort")
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2", ready=False)])], CONFIG)
    assert rules.chains == {}
    assert rules.elements == {("no-endpoint-services", "10.96.0.10 . tcp . 80"): "goto reject-chain",
                              ("no-endpoint-nodeports", "tcp . 30080"): "goto reject-chain"}


def test_terminating_endpoints_still_serving_are_used_only_when_none_is_ready():
    slices = [endpoint_slice(endpoints=[endpoint("10.244.0.2", ready=False, serving=True, terminating=True)])]
    sp = service_ports(service())[0]
    assert [e.ip for e in usable(port_endpoints(sp, slices, "n1"))] == ["10.244.0.2"]
    slices[0]["endpoints"].append(endpoint("10.244.0.3"))
    assert [e.ip for e in usable(port_endpoints(sp, slices, "n1"))] == ["10.244.0.3"]


@pytest.mark.parametrize("spec", [{"clusterIP": "None"}, {"clusterIP": ""}, {"type": "ExternalName"}])
def test_headless_and_externalname_services_get_no_rules(spec):
    svc = service()
    svc["spec"].update(spec)
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    assert rules == Rules()


def test_nodeport_with_cluster_policy_masquerades_then_balances():
    svc = service(ports=[{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort")
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    assert rules.chains["external-default/web/tcp/http"] == ("jump mark-for-masquerade",
                                                             "goto service-default/web/tcp/http")
    assert rules.elements[("service-nodeports", "tcp . 30080")] == "goto external-default/web/tcp/http"


def test_external_traffic_policy_local_sends_outsiders_to_local_endpoints_only():
    svc = service(ports=[{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort",
                  externalTrafficPolicy="Local")
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2"),
                                                          endpoint("10.244.1.2", node="n2")])], CONFIG)
    external = rules.chains["external-default/web/tcp/http"]
    assert external[0] == "ip saddr 10.244.0.0/16 goto service-default/web/tcp/http"
    assert external[-1] == "goto local-default/web/tcp/http"
    assert rules.chains["local-default/web/tcp/http"] == ("meta l4proto tcp dnat to 10.244.0.2:8080",)
    remote_only = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.1.2", node="n2")])], CONFIG)
    assert "local-default/web/tcp/http" not in remote_only.chains
    assert remote_only.elements[("no-endpoint-nodeports", "tcp . 30080")] == "drop"


def test_session_affinity_remembers_the_client_per_endpoint_with_the_timeout():
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rules = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2"), endpoint("10.244.0.3")])], CONFIG)
    ep = "endpoint-default/web/tcp/http__10.244.0.2/8080"
    assert rules.sets == {"affinity-default/web/tcp/http__10.244.0.2/8080", "affinity-default/web/tcp/http__10.244.0.3/8080"}
    assert rules.chains[ep] == ("update @affinity-default/web/tcp/http__10.244.0.2/8080 { ip saddr timeout 60s }",
                                "meta l4proto tcp dnat to 10.244.0.2:8080")
    chain = rules.chains["service-default/web/tcp/http"]
    assert f"ip saddr @affinity-default/web/tcp/http__10.244.0.2/8080 goto {ep}" in chain
    assert chain[-1].startswith("numgen random mod 2 vmap { 0 : goto " + ep)


def test_ports_resolve_per_slice_and_ipv6_slices_are_ignored():
    slices = [endpoint_slice(endpoints=[endpoint("10.244.0.2")], ports=[{"name": "http", "port": 8080}]),
              endpoint_slice(endpoints=[endpoint("10.244.0.3")], ports=[{"name": "http", "port": 9090}]),
              endpoint_slice(endpoints=[endpoint("fd00::1")], address_type="IPv6")]
    sp = service_ports(service())[0]
    assert [e.address for e in port_endpoints(sp, slices, "n1")] == ["10.244.0.2:8080", "10.244.0.3:9090"]


@pytest.mark.parametrize("spec, reason", [({"clusterIP": "10.96.0.300"}, "bad clusterIP"),
                                          ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "not TCP, UDP or SCTP"),
                                          ({"ports": [{"port": 0}]}, "bad port")])
def test_a_service_that_cannot_be_programmed_says_why(spec, reason):
    svc = service()
    svc["spec"].update(spec)
    with pytest.raises(ValueError, match=reason):
        service_rules(svc, [], CONFIG)


def test_an_endpoint_change_rewrites_only_that_services_chain_and_keeps_its_map_entry():
    svc = service()
    old = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2"), endpoint("10.244.0.3")])], CONFIG)
    new = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    assert diff_lines("t", old, new) == [
        "flush chain ip t service-default/web/tcp/http",
        "add rule ip t service-default/web/tcp/http ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "add rule ip t service-default/web/tcp/http meta l4proto tcp dnat to 10.244.0.2:8080"]
    assert diff_lines("t", new, new) == []


def test_losing_the_last_endpoint_swaps_the_map_entry_for_a_reject_and_deletes_the_chain():
    svc = service()
    old = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    new = service_rules(svc, [], CONFIG)
    assert diff_lines("t", old, new) == [
        "delete element ip t service-ips { 10.96.0.10 . tcp . 80 }",
        "flush chain ip t service-default/web/tcp/http",
        "delete chain ip t service-default/web/tcp/http",
        "add element ip t no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"]


def test_removing_an_affinity_endpoint_flushes_its_users_before_deleting_its_chain_and_set():
    svc = service(sessionAffinity="ClientIP")
    old = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2"), endpoint("10.244.0.3")])], CONFIG)
    new = service_rules(svc, [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    lines = diff_lines("t", old, new)
    gone = "default/web/tcp/http__10.244.0.3/8080"
    order = [lines.index("flush chain ip t service-default/web/tcp/http"),
             lines.index(f"delete chain ip t endpoint-{gone}"), lines.index(f"delete set ip t affinity-{gone}")]
    assert order == sorted(order)
    assert all("10.244.0.2/8080 {" not in line for line in lines)      # the kept endpoint is untouched


def test_the_full_script_replaces_any_old_table_in_the_same_transaction():
    rules = service_rules(service(), [endpoint_slice(endpoints=[endpoint("10.244.0.2")])], CONFIG)
    script = full_script(CONFIG, {"default/web": rules}).splitlines()
    assert script[:3] == ["add table ip t", "delete table ip t", 'add table ip t { comment "pkube Service proxy"; }']
    assert "add element ip t hairpin { 10.244.0.2 . 10.244.0.2 }" in script
    assert script.index("add chain ip t service-default/web/tcp/http") < \
        script.index("add element ip t service-ips { 10.96.0.10 . tcp . 80 : goto service-default/web/tcp/http }")


def test_hairpin_elements_are_pairs_of_the_same_address():
    assert hairpin_lines("t", {"10.0.0.1"}, {"10.0.0.2"}) == ["delete element ip t hairpin { 10.0.0.2 . 10.0.0.2 }",
                                                             "add element ip t hairpin { 10.0.0.1 . 10.0.0.1 }"]
