"""The proxier: keeps the nftables table equal to the Services and EndpointSlices it is shown.

Synchronous and single-threaded (the caller serialises calls; the asyncio shell runs them in
a worker thread). What was last applied is remembered per Service (`programmed`), so `sync`
writes only the difference; `sync_all` rebuilds the table from nothing in one transaction
(at start: a restarted proxy, SIGKILLed or not, leaves no stale rule; and whenever the table
went missing).

@hairpin (the pairs IP . IP of endpoint addresses) only grows in `sync`: deleting set
elements costs nft a listing of them (tens of ms with thousands), and a pair for an address
no longer an endpoint changes nothing (no Service DNATs to it). `prune` removes those; the
server calls it periodically.

Conflicts: a key of a shared map (a ClusterIP:port or a NodePort) belongs to the first
Service that claimed it; a later Service asking for it is programmed without it, with an
error naming both, and is synced again once the owner lets go.
"""

from __future__ import annotations

import logging
from collections import ChainMap, Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from pkube.proxy.backend import BackendError
from pkube.proxy.conntrack import Conntrack, ConntrackError
from pkube.proxy.nft import Nft
from pkube.proxy.rules import (NO_ENDPOINT_NODEPORTS, SERVICE_NODEPORTS, ProxyConfig, Rules, base_lines, diff_lines,
                         full_script, hairpin_lines, service_rules)

log = logging.getLogger(__name__)

NODEPORT_MAPS = (SERVICE_NODEPORTS, NO_ENDPOINT_NODEPORTS)

# (kind, key): "nodeport" for the NodePort maps, "service-ip" for the ClusterIP maps.
Claim = tuple[str, str]


def claim_of(element: tuple[str, str]) -> Claim:
    m, key = element
    return ("nodeport" if m in NODEPORT_MAPS else "service-ip", key)


def describe(claim: Claim) -> str:
    kind, key = claim
    if kind == "nodeport":
        protocol, port = key.split(" . ")
        return f"nodePort {port}/{protocol}"
    ip, protocol, port = key.split(" . ")
    return f"clusterIP {ip}:{port}/{protocol}"


@dataclass
class SyncResult:
    """`failed`: keys whose transaction failed (retry with back-off); `unblocked`: keys that
    were refused a claim now released (sync them again)."""

    failed: list[str] = field(default_factory=list)
    unblocked: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """One transaction's worth: each Service's (old, new) rules, and the state once it is applied."""

    changes: list[tuple[Rules | None, Rules | None]]
    rules: dict[str, Rules | None]
    owners: ChainMap            # claim -> owner over Proxier.owners; None: released
    hairpin: Counter            # changes of the reference counts
    hairpin_added: set[str]     # IPs new to @hairpin
    blocked: dict[Claim, set[str]]


class Proxier:
    """`services(key)` -> the Service dict or None; `slices(key)` -> its EndpointSlices;
    `service_keys()` -> every Service key. Reads may come from an informer's cache.
    `conntrack` (None: none) deletes the conntrack entries of UDP/SCTP flows that went.

    The nftables backend; subclasses render other rules (iptproxier.IptablesProxier) by
    overriding `_service_rules`, `_script`, `_full_script`, `_base_script`, `_write` and
    `in_place`: the bookkeeping (diffs per Service, clashes, flows) is shared."""

    def __init__(self, config: ProxyConfig, nft: Nft, services: Callable[[str], dict | None],
                 slices: Callable[[str], list[dict]], service_keys: Callable[[], Iterable[str]],
                 conntrack: Conntrack | None = None):
        self.config, self.nft, self.conntrack = config, nft, conntrack
        self.services, self.slices, self.service_keys = services, slices, service_keys
        self.programmed: dict[str, Rules] = {}
        self.owners: dict[Claim, str] = {}
        self.hairpin: Counter = Counter()               # endpoint IP -> Services using it
        self.hairpin_programmed: set[str] = set()      # the IPs in @hairpin
        self.blocked: dict[Claim, set[str]] = {}

    def sync_all(self) -> SyncResult:
        """Write the whole table from nothing in one transaction. Raises BackendError if even the
        bare table cannot be written; a Service whose rules fail is left out and reported."""
        self.programmed, self.owners, self.hairpin, self.blocked = {}, {}, Counter(), {}
        self.hairpin_programmed = set()
        plan = self._plan(self._ordered(self.service_keys()))
        services = {k: r for k, r in plan.rules.items() if r is not None}
        try:
            self._write(self._full_script(services))
        except BackendError as e:
            log.error("writing the whole table failed, programming Services one by one: %s", e)
            self._write(self._base_script())
            return self._each(list(services))
        self._commit(plan)
        log.info("%s written: %d Services", self.describe(), len(services))
        return SyncResult()

    def describe(self) -> str:
        return f"table ip {self.config.table}"

    def in_place(self) -> bool:
        """False when the table was deleted behind our back. Raises NftError."""
        return self.nft.table_exists(self.config.table)

    def _service_rules(self, service: dict, slices: list[dict]) -> Rules:
        return service_rules(service, slices, self.config)

    def _script(self, plan: _Plan) -> str:
        """The transaction of `plan`; "" when there is nothing to write."""
        lines = [line for old, new in plan.changes for line in diff_lines(self.config.table, old, new)]
        lines += hairpin_lines(self.config.table, plan.hairpin_added, set())
        return "\n".join(lines) + "\n" if lines else ""

    def _full_script(self, services: dict[str, Rules]) -> str:
        return full_script(self.config, services)

    def _base_script(self) -> str:
        return "\n".join(base_lines(self.config)) + "\n"

    def _write(self, script: str) -> None:
        self.nft.apply(script)

    def sync(self, keys: list[str]) -> SyncResult:
        """Bring the rules of the Services `keys` up to date in one transaction; if it fails,
        each Service alone, so one bad Service does not hold back the others."""
        result = self._apply(keys)
        if result is not None:
            return result
        if len(keys) == 1:
            return SyncResult(failed=list(keys))
        return self._each(keys)

    def _each(self, keys: list[str]) -> SyncResult:
        """A transaction per Service of `keys`: the failed ones are reported."""
        merged = SyncResult()
        for key in keys:
            one = self._apply([key]) or SyncResult(failed=[key])
            merged.failed += one.failed
            merged.unblocked += one.unblocked
        return merged

    def prune(self) -> None:
        """Remove the @hairpin pairs of addresses no Service uses any more. Raises NftError."""
        stale = self.hairpin_programmed - set(self.hairpin)
        if stale:
            self.nft.apply("\n".join(hairpin_lines(self.config.table, set(), stale)) + "\n")
            self.hairpin_programmed -= stale

    def _apply(self, keys: list[str]) -> SyncResult | None:
        """One transaction for `keys`: its result, or None when it was refused (logged)."""
        plan = self._plan(keys)
        script = self._script(plan)
        if script:
            try:
                self._write(script)
            except BackendError as e:
                log.error("Service %s: rules not applied: %s", ", ".join(keys), e)
                return None
        gone = self._gone_flows(plan)
        result = SyncResult(unblocked=self._commit(plan))
        self._forget_flows(gone)
        return result

    def _gone_flows(self, plan: _Plan) -> list:
        gone = set()
        for key, new in plan.rules.items():
            old = self.programmed.get(key)
            if old is not None:
                gone |= old.flows - (new.flows if new else frozenset())
        return sorted(gone, key=repr)

    def _forget_flows(self, flows: list) -> None:
        """Delete the conntrack entries of `flows` (now without rules); errors are logged."""
        if self.conntrack is None or not flows:
            return
        try:
            deleted = self.conntrack.delete_flows(flows)
        except ConntrackError as e:
            log.warning("%s", e)
            return
        if deleted:
            log.info("deleted %d stale conntrack entries", deleted)

    def _ordered(self, keys: Iterable[str]) -> list[str]:
        """Oldest Services first, so a clash goes to the one that had the key first."""
        def age(key: str) -> tuple[str, str]:
            service = self.services(key) or {}
            return ((service.get("metadata") or {}).get("creationTimestamp") or "", key)
        return sorted(keys, key=age)

    def _desired(self, key: str) -> Rules | None:
        """The Rules `key` should have; None when the Service is gone or cannot be programmed."""
        service = self.services(key)
        if service is None:
            return None
        try:
            return self._service_rules(service, self.slices(key))
        except ValueError as e:
            log.error("Service %s: %s; it gets no rules", key, e)
            return None

    def _plan(self, keys: list[str]) -> _Plan:
        """The transaction for `keys`, and the state changes it makes (as overlays: their cost
        follows the Services synced, not the table's size)."""
        plan = _Plan([], {}, ChainMap({}, self.owners), Counter(), set(),
                     {c: set(ks) for c, ks in self.blocked.items()})
        for key in dict.fromkeys(keys):
            old, new = self.programmed.get(key), self._desired(key)
            if new is not None:
                self._claim(key, new, plan)
            kept = {claim_of(e) for e in new.elements} if new else set()
            for claim in ({claim_of(e) for e in old.elements} - kept if old else ()):
                if plan.owners.get(claim) == key:
                    plan.owners[claim] = None            # released
            plan.hairpin.subtract(old.hairpin if old else ())
            plan.hairpin.update(new.hairpin if new else ())
            plan.changes.append((old, new))
            plan.rules[key] = new
        plan.hairpin_added = {ip for ip, delta in plan.hairpin.items()
                              if self.hairpin[ip] + delta > 0 and ip not in self.hairpin_programmed}
        return plan

    def _claim(self, key: str, rules: Rules, plan: _Plan) -> None:
        """Take `rules`' map keys for `key`; drop (and log) those another Service holds."""
        for element in list(rules.elements):
            claim = claim_of(element)
            owner = plan.owners.get(claim)
            if owner is not None and owner != key:
                del rules.elements[element]
                if key not in plan.blocked.get(claim, ()):
                    log.error("Service %s: %s is already used by Service %s; not programmed",
                              key, describe(claim), owner)
                plan.blocked.setdefault(claim, set()).add(key)
                continue
            plan.owners[claim] = key
            if key in plan.blocked.get(claim, ()):
                plan.blocked[claim].discard(key)

    def _commit(self, plan: _Plan) -> list[str]:
        """Adopt `plan` as what is applied; the blocked keys whose claim is now free."""
        for key, rules in plan.rules.items():
            if rules is None:
                self.programmed.pop(key, None)
            else:
                self.programmed[key] = rules
        for claim, owner in plan.owners.maps[0].items():
            if owner is None:
                self.owners.pop(claim, None)
            else:
                self.owners[claim] = owner
        for ip, delta in plan.hairpin.items():
            if self.hairpin[ip] + delta > 0:
                self.hairpin[ip] += delta
            else:
                self.hairpin.pop(ip, None)
        self.hairpin_programmed |= plan.hairpin_added
        self.blocked = {c: ks for c, ks in plan.blocked.items() if ks}
        free = [c for c in self.blocked if c not in self.owners]
        return sorted({k for c in free for k in self.blocked.pop(c)})
