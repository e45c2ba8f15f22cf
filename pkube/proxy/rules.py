"""nftables text of the Service proxy: pure functions, no nft process.

One table, `ip pkube-proxy`, laid out as kube-proxy's nftables mode:

    filter-input/-forward/-output (filter, dstnat-10)  ct state new jump endpoints-check
    nat-prerouting, nat-output    (nat, dstnat)        jump services
    nat-postrouting               (nat, srcnat)        jump masquerading
    services          ip daddr . meta l4proto . th dport vmap @service-ips      (ClusterIPs)
                      fib daddr type local meta l4proto . th dport vmap @service-nodeports
    endpoints-check   the same keys in @no-endpoint-services / @no-endpoint-nodeports:
                      reject-chain (no endpoints) or drop (Local policy, none on this node)
    masquerading      hairpin pairs (@hairpin: an endpoint reaching itself) and the 0x4000 mark
    per Service port (ID = namespace/name/protocol/port-name):
      service-ID      numgen random mod N over the ready endpoints (dnat through a map)
      local-ID        the same over this node's endpoints (externalTrafficPolicy: Local)
      external-ID     NodePort traffic: mark for masquerade (Cluster) or short-circuits (Local)
      endpoint-ID__IP/PORT and set affinity-ID__IP/PORT    only with sessionAffinity ClientIP

A Service's own objects (chains, affinity sets, its keys in the shared maps) are a `Rules`;
`diff_script(old, new)` rewrites exactly what differs, so a change to one Service touches that
Service only. The shared @hairpin set is reference-counted by the caller (`hairpin_script`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pkube.proxy.model import Endpoint, Flow, ServicePort, port_endpoints, service_ports, usable

MASQUERADE_MARK = "0x00004000"
SERVICE_IPS, SERVICE_NODEPORTS = "service-ips", "service-nodeports"
NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS = "no-endpoint-services", "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"

BASE_CHAINS = {
    "filter-input": "type filter hook input priority -110; policy accept;",
    "filter-forward": "type filter hook forward priority -110; policy accept;",
    "filter-output": "type filter hook output priority -110; policy accept;",
    "nat-prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority srcnat; policy accept;",
}

MAPS = {
    SERVICE_IPS: "type ipv4_addr . inet_proto . inet_service : verdict;",
    SERVICE_NODEPORTS: "type inet_proto . inet_service : verdict;",
    NO_ENDPOINT_SERVICES: "type ipv4_addr . inet_proto . inet_service : verdict;",
    NO_ENDPOINT_NODEPORTS: "type inet_proto . inet_service : verdict;",
    "hairpin": "type ipv4_addr . ipv4_addr;",
}

AFFINITY_SET = "type ipv4_addr; flags dynamic,timeout;"


@dataclass(frozen=True)
class ProxyConfig:
    """`cluster_cidr`: the pod network (traffic from elsewhere to a ClusterIP is masqueraded,
    and pods skip externalTrafficPolicy Local); `node_name`: endpoints there are local."""

    table: str = "pkube-proxy"
    cluster_cidr: str = "10.244.0.0/16"
    node_name: str = ""


@dataclass
class Rules:
    """The nft objects of one Service: its chains (name -> rules), its affinity sets, its keys
    in the shared maps ((map, key) -> verdict), its endpoint IPs for @hairpin, and its UDP and
    SCTP flows (whose conntrack entries go when the flow does)."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets: set[str] = field(default_factory=set)
    elements: dict[tuple[str, str], str] = field(default_factory=dict)
    hairpin: frozenset[str] = frozenset()
    flows: frozenset[Flow] = frozenset()

    def merge(self, other: "Rules") -> None:
        self.chains.update(other.chains)
        self.sets |= other.sets
        self.elements.update(other.elements)
        self.hairpin |= other.hairpin
        self.flows |= other.flows


# ---- one Service -----------------------------------------------------------------------------

def service_rules(service: dict, slices: list[dict], config: ProxyConfig) -> Rules:
    """The Rules of `service` given its EndpointSlices. Raises ValueError for a Service that
    cannot be programmed (bad clusterIP, port or protocol)."""
    rules = Rules()
    for sp in service_ports(service):
        rules.merge(port_rules(sp, port_endpoints(sp, slices, config.node_name), config))
    return rules


def port_rules(sp: ServicePort, endpoints: list[Endpoint], config: ProxyConfig) -> Rules:
    """The Rules of one Service port over its endpoints (all of them, ready or not)."""
    rules = Rules()
    cluster = usable(endpoints)
    local = usable([e for e in endpoints if e.local])
    vip_key = f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"
    np_key = f"{sp.protocol} . {sp.node_port}"
    if not cluster:
        rules.elements[(NO_ENDPOINT_SERVICES, vip_key)] = f"goto {REJECT_CHAIN}"
        if sp.node_port:
            rules.elements[(NO_ENDPOINT_NODEPORTS, np_key)] = f"goto {REJECT_CHAIN}"
        return rules
    rules.hairpin = frozenset(e.ip for e in cluster)
    rules.flows = connectionless_flows(sp, cluster, local)
    service_chain = f"service-{sp.id}"
    masquerade_outsiders = (f"ip daddr {sp.cluster_ip} {sp.protocol} dport {sp.port} "
                            f"ip saddr != {config.cluster_cidr} jump mark-for-masquerade")
    rules.chains[service_chain] = (masquerade_outsiders, *balance(sp, cluster, rules))
    rules.elements[(SERVICE_IPS, vip_key)] = f"goto {service_chain}"
    if sp.node_port:
        rules.chains[f"external-{sp.id}"] = external_chain(sp, service_chain, bool(local), config)
        rules.elements[(SERVICE_NODEPORTS, np_key)] = f"goto external-{sp.id}"
        if sp.external_local and local:
            rules.chains[f"local-{sp.id}"] = balance(sp, local, rules)
        elif sp.external_local:
            rules.elements[(NO_ENDPOINT_NODEPORTS, np_key)] = "drop"
    return rules


def connectionless_flows(sp: ServicePort, cluster: list[Endpoint], local: list[Endpoint]) -> frozenset[Flow]:
    """The (front, endpoint) pairs conntrack may hold for a UDP or SCTP port; none for TCP."""
    if sp.protocol == "tcp":
        return frozenset()
    flows = {Flow(sp.protocol, sp.cluster_ip, sp.port, e.ip, e.port) for e in cluster}
    if sp.node_port:
        flows |= {Flow(sp.protocol, "", sp.node_port, e.ip, e.port) for e in cluster + local}
    return frozenset(flows)


def balance(sp: ServicePort, endpoints: list[Endpoint], rules: Rules) -> tuple[str, ...]:
    """Rules spreading new connections over `endpoints` with `numgen random mod N`: one dnat
    through a map, or (session affinity) a vmap to per-endpoint chains that remember the
    client in a timeout set. Adds those endpoint chains and sets to `rules`."""
    if not sp.affinity_timeout:
        if len(endpoints) == 1:
            return (f"meta l4proto {sp.protocol} dnat to {endpoints[0].address}",)
        targets = ", ".join(f"{i} : {e.ip} . {e.port}" for i, e in enumerate(endpoints))
        return (f"meta l4proto {sp.protocol} dnat ip addr . port to numgen random mod {len(endpoints)} "
                f"map {{ {targets} }}",)
    sticky = []
    for e in endpoints:
        chain, affinity = f"endpoint-{sp.id}__{e.ip}/{e.port}", f"affinity-{sp.id}__{e.ip}/{e.port}"
        rules.sets.add(affinity)
        rules.chains[chain] = (f"update @{affinity} {{ ip saddr timeout {sp.affinity_timeout}s }}",
                               f"meta l4proto {sp.protocol} dnat to {e.address}")
        sticky.append(f"ip saddr @{affinity} goto {chain}")
    targets = ", ".join(f"{i} : goto endpoint-{sp.id}__{e.ip}/{e.port}" for i, e in enumerate(endpoints))
    return (*sticky, f"numgen random mod {len(endpoints)} vmap {{ {targets} }}")


def external_chain(sp: ServicePort, service_chain: str, has_local: bool, config: ProxyConfig) -> tuple[str, ...]:
    """NodePort traffic. Cluster policy: masquerade (the endpoint may be on another node), then
    the Service's chain. Local: pods and the node itself still reach every endpoint; others
    only this node's, keeping their source address (no local endpoint: falls through, dropped
    by endpoints-check)."""
    if not sp.external_local:
        return ("jump mark-for-masquerade", f"goto {service_chain}")
    rules = (f"ip saddr {config.cluster_cidr} goto {service_chain}",
             "fib saddr type local jump mark-for-masquerade",
             f"fib saddr type local goto {service_chain}")
    return (*rules, f"goto local-{sp.id}") if has_local else rules


# ---- scripts ---------------------------------------------------------------------------------

def base_lines(config: ProxyConfig) -> list[str]:
    """The table made anew (an existing one is deleted in the same transaction), with its
    base chains, shared maps and fixed rules, and no Service."""
    t = f"ip {config.table}"
    lines = [f"add table {t}", f"delete table {t}", f"add table {t} {{ comment \"pkube Service proxy\"; }}"]
    lines += [f"add chain {t} {name} {{ {hook} }}" for name, hook in BASE_CHAINS.items()]
    lines += [f"add chain {t} {name}" for name in
              ("services", "endpoints-check", REJECT_CHAIN, "mark-for-masquerade", "masquerading")]
    lines += [f"add map {t} {name} {{ {spec} }}" if ":" in spec else f"add set {t} {name} {{ {spec} }}"
              for name, spec in MAPS.items()]
    rules = {
        "filter-input": ["ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state new ct status & dnat == 0 drop",
                         "ct state new jump endpoints-check"],
        "filter-forward": ["ct state new jump endpoints-check"],
        "filter-output": ["ct state new jump endpoints-check"],
        "nat-prerouting": ["jump services"],
        "nat-output": ["jump services"],
        "nat-postrouting": ["jump masquerading"],
        "services": [f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                     f"fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"],
        "endpoints-check": [f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}",
                            f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"],
        REJECT_CHAIN: ["meta l4proto tcp reject with tcp reset", "reject"],
        "mark-for-masquerade": [f"meta mark set meta mark or {MASQUERADE_MARK}"],
        "masquerading": ["ct status dnat ip saddr . ip daddr @hairpin masquerade",
                         f"meta mark & {MASQUERADE_MARK} == 0 return",
                         f"meta mark set meta mark xor {MASQUERADE_MARK}",
                         "masquerade fully-random"],
    }
    lines += [f"add rule {t} {chain} {rule}" for chain, chain_rules in rules.items() for rule in chain_rules]
    return lines


def full_script(config: ProxyConfig, services: dict[str, Rules]) -> str:
    """One transaction writing the whole table from nothing: base, every Service, @hairpin."""
    lines = base_lines(config)
    for rules in services.values():
        lines += diff_lines(config.table, None, rules)
    hairpin = set().union(*(r.hairpin for r in services.values())) if services else set()
    lines += hairpin_lines(config.table, hairpin, set())
    return "\n".join(lines) + "\n"


def diff_lines(table: str, old: Rules | None, new: Rules | None) -> list[str]:
    """The commands turning one Service's objects from `old` into `new` (None: absent), in an
    order the kernel accepts in one transaction: references go before what they point to is
    deleted, and come after what they point to is made. Unchanged chains are not touched."""
    old, new, t = old or Rules(), new or Rules(), f"ip {table}"
    stale_elements = [k for k, v in old.elements.items() if new.elements.get(k) != v]
    fresh_elements = [k for k, v in new.elements.items() if old.elements.get(k) != v]
    rewritten = [c for c, rules in new.chains.items() if old.chains.get(c) != rules]
    gone_chains = [c for c in old.chains if c not in new.chains]
    lines = [f"delete element {t} {m} {{ {key} }}" for m, key in stale_elements]
    lines += [f"flush chain {t} {c}" for c in gone_chains + [c for c in rewritten if c in old.chains]]
    lines += [f"delete chain {t} {c}" for c in gone_chains]
    lines += [f"delete set {t} {s}" for s in sorted(old.sets - new.sets)]
    lines += [f"add set {t} {s} {{ {AFFINITY_SET} }}" for s in sorted(new.sets - old.sets)]
    lines += [f"add chain {t} {c}" for c in rewritten if c not in old.chains]
    lines += [f"add rule {t} {c} {rule}" for c in rewritten for rule in new.chains[c]]
    lines += [f"add element {t} {m} {{ {key} : {new.elements[(m, key)]} }}" for m, key in fresh_elements]
    return lines


def hairpin_lines(table: str, added: set[str], removed: set[str]) -> list[str]:
    """Elements of @hairpin (pairs IP . IP: an endpoint reaching itself is masqueraded)."""
    lines = [f"delete element ip {table} hairpin {{ {ip} . {ip} }}" for ip in sorted(removed)]
    return lines + [f"add element ip {table} hairpin {{ {ip} . {ip} }}" for ip in sorted(added)]
