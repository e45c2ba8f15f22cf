"""iptables-restore text of the Service proxy: pure functions over the model, no process.

The fallback where nftables is missing, laid out as kube-proxy's iptables mode: chains named
PKUBE-* in the nat and filter tables, which the proxy alone owns.

    nat PREROUTING, OUTPUT      -j PKUBE-SERVICES
    nat POSTROUTING             -j PKUBE-POSTROUTING
    filter INPUT/FORWARD/OUTPUT -m conntrack --ctstate NEW -j PKUBE-SERVICES; INPUT -j PKUBE-FIREWALL
    nat PKUBE-SERVICES      -d CLUSTERIP -p P --dport PORT -j PKUBE-SVC-H   (one per Service port)
                            last: -m addrtype --dst-type LOCAL -j PKUBE-NODEPORTS
    nat PKUBE-NODEPORTS     -p P --dport NODEPORT -j PKUBE-EXT-H
    PKUBE-SVC-H             outsiders marked for masquerade; [affinity: -m recent --rcheck per
                            endpoint]; -m statistic --mode random --probability 1/(N-i) -j PKUBE-SEP-H
    PKUBE-EXT-H             NodePort: mark, -j PKUBE-SVC-H (Local: pods and the node to SVC,
                            the rest to PKUBE-SVL-H, this node's endpoints)
    PKUBE-SEP-H             -s IP -j PKUBE-MARK-MASQ (hairpin); [-m recent --set] -j DNAT IP:PORT
    filter PKUBE-SERVICES   REJECT for ports without endpoints; DROP for Local NodePorts with
                            none on this node (only what was not DNATed reaches it)
    PKUBE-MARK-MASQ, PKUBE-POSTROUTING    the 0x4000 mark, masqueraded on the way out

H: the first 16 base32 characters of the SHA-256 of the Service port's id (and endpoint).
Only the shared chains' rules carry a comment naming the Service: an xt comment takes 256
bytes in every rule, and legacy iptables copies the whole table in and out of the kernel on
each change; without comments on the ~30,000 rules of 1,000 x 10 Services' own chains,
iptables-legacy-restore wrote them in half the time here (0.8 s instead of 1.7 s, same load).

A Service's objects are an `IptRules`: its own chains, and its rules in the shared chains
(nat PKUBE-SERVICES / PKUBE-NODEPORTS, filter PKUBE-SERVICES), grouped by the key they claim
(a ClusterIP:port or a NodePort, as the nftables renderer's map keys, so the proxier settles
clashes the same way). `diff_text(changes)` is one `iptables-restore --noflush` input that
rewrites only the changed Services' chains and swaps only their shared rules (`-D`, `-I`);
`full_text` writes every PKUBE chain from nothing and deletes stale ones.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from pkube.proxy.model import Endpoint, Flow, ServicePort, port_endpoints, service_ports, usable
from pkube.proxy.rules import SERVICE_IPS, SERVICE_NODEPORTS, ProxyConfig, connectionless_flows

NAT, FILTER = "nat", "filter"
SERVICES, NODEPORTS = "PKUBE-SERVICES", "PKUBE-NODEPORTS"
POSTROUTING, MARK_MASQ, FIREWALL = "PKUBE-POSTROUTING", "PKUBE-MARK-MASQ", "PKUBE-FIREWALL"
PREFIX = "PKUBE-"
MASQUERADE_MARK = "0x4000"
TABLES = (NAT, FILTER)

BASE_CHAINS = {NAT: (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ), FILTER: (SERVICES, FIREWALL)}

NODEPORTS_JUMP = f'-m comment --comment "pkube service nodeports; last in this chain" ' \
                 f'-m addrtype --dst-type LOCAL -j {NODEPORTS}'
FIXED_RULES = {
    (NAT, MARK_MASQ): (f"-j MARK --or-mark {MASQUERADE_MARK}",),
    (NAT, POSTROUTING): (f"-m mark ! --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j RETURN",
                         f"-j MARK --xor-mark {MASQUERADE_MARK}",
                         '-m comment --comment "pkube service traffic requiring SNAT" -j MASQUERADE --random-fully'),
    (FILTER, FIREWALL): ('-m comment --comment "block incoming localnet connections (CVE-2020-8558)" '
                         "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",),
}

# (table, built-in chain, rule): put first in the built-in chain when a listing lacks it.
PORTALS = '-m comment --comment "pkube service portals"'
JUMPS = (
    (NAT, "PREROUTING", f"{PORTALS} -j {SERVICES}"),
    (NAT, "OUTPUT", f"{PORTALS} -j {SERVICES}"),
    (NAT, "POSTROUTING", f'-m comment --comment "pkube postrouting rules" -j {POSTROUTING}'),
    (FILTER, "INPUT", f"-m conntrack --ctstate NEW {PORTALS} -j {SERVICES}"),
    (FILTER, "FORWARD", f"-m conntrack --ctstate NEW {PORTALS} -j {SERVICES}"),
    (FILTER, "OUTPUT", f"-m conntrack --ctstate NEW {PORTALS} -j {SERVICES}"),
    (FILTER, "INPUT", f"-j {FIREWALL}"),
)

Chain = tuple[str, str]              # (table, chain)
Entry = tuple[str, str, str]         # (table, shared chain, rule)


@dataclass
class IptRules:
    """The iptables objects of one Service: its own chains ((table, name) -> rules), its
    rules in the shared chains by the key they claim ((map, key) -> entries, map being the
    nftables renderer's SERVICE_IPS or SERVICE_NODEPORTS), and its UDP/SCTP flows. `hairpin`
    is always empty (hairpin is a rule of each endpoint chain); it is there for the proxier."""

    chains: dict[Chain, tuple[str, ...]] = field(default_factory=dict)
    elements: dict[tuple[str, str], tuple[Entry, ...]] = field(default_factory=dict)
    flows: frozenset[Flow] = frozenset()
    hairpin: frozenset[str] = frozenset()

    def merge(self, other: "IptRules") -> None:
        self.chains.update(other.chains)
        for claim, entries in other.elements.items():
            self.elements[claim] = self.elements.get(claim, ()) + entries
        self.flows |= other.flows

    def entries(self) -> set[Entry]:
        return {e for entries in self.elements.values() for e in entries}


def chain_name(kind: str, *parts: str) -> str:
    """PKUBE-<kind>-<16 base32 characters of the SHA-256 of parts>: 26 characters at most,
    under iptables' 28."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return f"{PREFIX}{kind}-{base64.b32encode(digest).decode()[:16]}"


# ---- one Service -----------------------------------------------------------------------------

def service_rules(service: dict, slices: list[dict], config: ProxyConfig) -> IptRules:
    """The IptRules of `service` given its EndpointSlices. Raises ValueError for a Service
    that cannot be programmed (bad clusterIP, port or protocol)."""
    rules = IptRules()
    for sp in service_ports(service):
        rules.merge(port_rules(sp, port_endpoints(sp, slices, config.node_name), config))
    return rules


def port_rules(sp: ServicePort, endpoints: list[Endpoint], config: ProxyConfig) -> IptRules:
    """The IptRules of one Service port over its endpoints (all of them, ready or not)."""
    rules = IptRules()
    cluster = usable(endpoints)
    local = usable([e for e in endpoints if e.local])
    comment = f'-m comment --comment "{sp}"'
    vip = (SERVICE_IPS, f"{sp.cluster_ip} . {sp.protocol} . {sp.port}")
    nodeport = (SERVICE_NODEPORTS, f"{sp.protocol} . {sp.node_port}")
    vip_match = f"-d {sp.cluster_ip}/32 -p {sp.protocol} -m {sp.protocol} --dport {sp.port}"
    np_match = f"-p {sp.protocol} -m {sp.protocol} --dport {sp.node_port}"
    local_np = f"{comment} -m addrtype --dst-type LOCAL {np_match}"
    if not cluster:
        rules.elements[vip] = ((FILTER, SERVICES, f"{comment} {vip_match} -j {reject(sp)}"),)
        if sp.node_port:
            rules.elements[nodeport] = ((FILTER, SERVICES, f"{local_np} -j {reject(sp)}"),)
        return rules
    rules.flows = connectionless_flows(sp, cluster, local)
    svc = chain_name("SVC", sp.id)
    rules.chains[(NAT, svc)] = (f"{vip_match} ! -s {config.cluster_cidr} -j {MARK_MASQ}",
                                *balance(sp, cluster, rules))
    rules.elements[vip] = ((NAT, SERVICES, f"{comment} {vip_match} -j {svc}"),)
    if sp.node_port:
        ext = chain_name("EXT", sp.id)
        rules.chains[(NAT, ext)] = external_chain(sp, svc, bool(local), config)
        rules.elements[nodeport] = ((NAT, NODEPORTS, f"{comment} {np_match} -j {ext}"),)
        if sp.external_local and local:
            rules.chains[(NAT, chain_name("SVL", sp.id))] = balance(sp, local, rules)
        elif sp.external_local:            # none here: what was not DNATed (outsiders) is dropped
            rules.elements[nodeport] += ((FILTER, SERVICES, f"{local_np} -j DROP"),)
    return rules


def reject(sp: ServicePort) -> str:
    """TCP is reset, the rest gets ICMP port unreachable: either way `Connection refused`."""
    return "REJECT --reject-with " + ("tcp-reset" if sp.protocol == "tcp" else "icmp-port-unreachable")


def balance(sp: ServicePort, endpoints: list[Endpoint], rules: IptRules) -> tuple[str, ...]:
    """Rules spreading new connections over `endpoints`: endpoint i of N taken with
    probability 1/(N-i) (the last always), kube-proxy's `-m statistic --mode random`; with
    session affinity a client seen within the timeout (`-m recent --rcheck`) goes back to its
    endpoint first. Adds the endpoint chains to `rules`."""
    seps = [endpoint_chain(sp, e, rules) for e in endpoints]
    sticky = tuple(f"-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck "
                   f"--seconds {sp.affinity_timeout} --reap -j {sep}" for sep in seps) if sp.affinity_timeout else ()
    spread = []
    for i, sep in enumerate(seps):
        odds = "" if i == len(seps) - 1 else f"-m statistic --mode random --probability {1 / (len(seps) - i):.10f} "
        spread.append(f"{odds}-j {sep}")
    return (*sticky, *spread)


def endpoint_chain(sp: ServicePort, e: Endpoint, rules: IptRules) -> str:
    """PKUBE-SEP-H of `e`, added to `rules`: hairpin (the endpoint reaching itself is
    masqueraded), the affinity record, the DNAT."""
    sep = chain_name("SEP", sp.id, e.address)
    remember = f"-m recent --name {sep} --mask 255.255.255.255 --rsource --set " if sp.affinity_timeout else ""
    rules.chains[(NAT, sep)] = (f"-s {e.ip}/32 -j {MARK_MASQ}",
                                f"-p {sp.protocol} {remember}-j DNAT --to-destination {e.address}")
    return sep


def external_chain(sp: ServicePort, svc: str, has_local: bool, config: ProxyConfig) -> tuple[str, ...]:
    """NodePort traffic. Cluster policy: masquerade, then the Service's chain. Local: pods and
    the node itself reach every endpoint; others this node's only, keeping their source (no
    local endpoint: falls through undNATed, dropped in filter PKUBE-SERVICES)."""
    if not sp.external_local:
        return (f"-j {MARK_MASQ}", f"-j {svc}")
    rules = (f"-s {config.cluster_cidr} -j {svc}",
             f"-m addrtype --src-type LOCAL -j {MARK_MASQ}",
             f"-m addrtype --src-type LOCAL -j {svc}")
    return (*rules, f"-j {chain_name('SVL', sp.id)}") if has_local else rules


# ---- iptables-restore input ------------------------------------------------------------------

def listed_chains(table: str, listing: str) -> set[Chain]:
    """The (table, chain) of every chain in `listing` (iptables-save -t table)."""
    return {(table, line[1:].split()[0]) for line in listing.splitlines() if line.startswith(":")}


def missing_jumps(listings: dict[str, str]) -> list[tuple[str, str, str]]:
    """The JUMPS absent from `listings` (table -> iptables-save -t table): a jump counts as
    there when a rule of its built-in chain ends in its target and carries its comment."""
    missing = []
    for table, chain, rule in JUMPS:
        target = rule.rsplit(" ", 1)[1]
        comment = rule.split('"')[1] if '"' in rule else ""
        if not any(line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}") and comment in line
                   for line in listings.get(table, "").splitlines()):
            missing.append((table, chain, rule))
    return missing


def full_text(services: dict[str, IptRules], existing: set[Chain] = frozenset(),
              jumps: list[tuple[str, str, str]] = ()) -> str:
    """One `iptables-restore --noflush` input writing every PKUBE chain from nothing: base
    chains, fixed rules, every Service; the `existing` PKUBE chains no longer wanted are
    flushed and deleted, and `jumps` (missing_jumps) put first in their built-in chains, in
    the same transaction."""
    chains: dict[Chain, tuple[str, ...]] = {(t, c): FIXED_RULES.get((t, c), ())
                                            for t, names in BASE_CHAINS.items() for c in names}
    shared: dict[Chain, list[str]] = {c: [] for c in chains}
    for rules in services.values():
        chains.update(rules.chains)
        for table, chain, rule in sorted(rules.entries()):
            shared[(table, chain)].append(rule)
    shared[(NAT, SERVICES)].append(NODEPORTS_JUMP)
    stale = {c for c in existing if c[1].startswith(PREFIX)} - set(chains)
    out = []
    for table in TABLES:
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for t, c in sorted(set(chains) | stale) if t == table]
        out += [f"-A {c} {rule}" for (t, c), rules in shared.items() if t == table for rule in rules]
        out += [f"-A {c} {rule}" for (t, c), rules in chains.items() if t == table for rule in rules]
        out += [f"-X {c}" for t, c in sorted(stale) if t == table]
        out += [f"-I {c} 1 {rule}" for t, c, rule in jumps if t == table]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def diff_text(changes: list[tuple[IptRules | None, IptRules | None]]) -> str:
    """One `iptables-restore --noflush` input turning each Service's objects from old into new
    (None: absent): its changed chains declared (which flushes them) and refilled, its gone
    chains deleted after the rules pointing at them, its shared rules deleted (-D) and inserted
    (-I) one by one. Other Services' chains are not named. "" when nothing changes."""
    out = []
    for table in TABLES:
        declare, delete, drop, fill, insert = [], [], [], [], []
        for old, new in changes:
            old, new = old or IptRules(), new or IptRules()
            rewritten = [c for (t, c), rules in new.chains.items() if t == table and old.chains.get((t, c)) != rules]
            gone = [c for t, c in old.chains if t == table and (t, c) not in new.chains]
            declare += rewritten + gone
            drop += gone
            fill += [f"-A {c} {rule}" for c in rewritten for rule in new.chains[(table, c)]]
            old_entries, new_entries = old.entries(), new.entries()
            delete += [f"-D {c} {rule}" for t, c, rule in sorted(old_entries - new_entries) if t == table]
            insert += [f"-I {c} 1 {rule}" for t, c, rule in sorted(new_entries - old_entries) if t == table]
        if declare or delete or insert:
            out += [f"*{table}", *(f":{c} - [0:0]" for c in declare), *delete, *(f"-X {c}" for c in drop),
                    *fill, *insert, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""
