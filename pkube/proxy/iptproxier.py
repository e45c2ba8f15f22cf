"""The proxier of the iptables backend: the nftables Proxier's bookkeeping (a diff per
Service, clashes, conntrack of gone flows) over iptrules' chains, applied through
`iptables-restore --noflush`.

`sync_all` lists the nat and filter tables (iptables-save) and writes every PKUBE chain in
one input that also deletes the stale ones and inserts the built-in chains' jumps the listing
lacks (one process: `iptables -C` and `-I` per jump cost ~0.3 s each with legacy and a big
table, which copies the whole table for each). `sync` writes one input per round rewriting the changed Services only; when it
is refused (someone deleted a rule `-D` names), the whole set is written again, as kube-proxy
follows a failed partial sync with a full one.
"""

from __future__ import annotations

import logging

from pkube.proxy.backend import BackendError
from pkube.proxy.ipt import Iptables
from pkube.proxy.iptrules import (FILTER, JUMPS, NAT, TABLES, IptRules, diff_text, full_text, listed_chains,
                                  missing_jumps, service_rules)
from pkube.proxy.proxier import Proxier, SyncResult, _Plan

log = logging.getLogger(__name__)

CHECKED_JUMPS = tuple(next(j for j in JUMPS if j[0] == table) for table in (NAT, FILTER))


class IptablesProxier(Proxier):
    """As Proxier, writing iptables chains through `ipt` (the `nft` attribute holds it too,
    for the shared code; hairpin is per endpoint chain here, so prune has nothing to do)."""

    def __init__(self, config, ipt: Iptables, services, slices, service_keys, conntrack=None):
        super().__init__(config, ipt, services, slices, service_keys, conntrack)
        self.ipt = ipt

    def describe(self) -> str:
        return f"{self.ipt.command} chains PKUBE-*"

    def sync(self, keys: list[str]) -> SyncResult:
        """As Proxier.sync; a refused input is followed by a full write (sync_all), whose
        failure marks every key failed."""
        result = self._apply(keys)
        if result is not None:
            return result
        log.warning("Services %s: writing every chain again", ", ".join(keys))
        try:
            return self.sync_all()
        except BackendError as e:
            log.error("writing every chain failed: %s", e)
            return SyncResult(failed=list(keys))

    def in_place(self) -> bool:
        """False when the first jump of nat or of filter is gone (iptables -F, -X of our
        chains): one `iptables -C` per table, cheap enough to run every 30 s."""
        return all(self.ipt.has_rule(table, chain, rule) for table, chain, rule in CHECKED_JUMPS)

    def prune(self) -> None:
        """Nothing to prune: hairpin is a rule of each endpoint chain."""

    def _service_rules(self, service: dict, slices: list[dict]) -> IptRules:
        return service_rules(service, slices, self.config)

    def _script(self, plan: _Plan) -> str:
        return diff_text(plan.changes)

    def _full_script(self, services: dict[str, IptRules]) -> str:
        listings = {table: self.ipt.save(table) for table in TABLES}
        existing = {c for table, listing in listings.items() for c in listed_chains(table, listing)}
        return full_text(services, existing, missing_jumps(listings))

    def _base_script(self) -> str:
        return self._full_script({})

    def _write(self, script: str) -> None:
        self.ipt.restore(script)


def remove_all(ipt: Iptables) -> None:
    """Delete the jumps to our chains and every PKUBE chain of the nat and filter tables (--cleanup)."""
    for table, chain, rule in JUMPS:
        while ipt.has_rule(table, chain, rule):
            ipt.delete_rule(table, chain, rule)
    ours = {(table, chain) for table in TABLES for t, chain in listed_chains(table, ipt.save(table))
            if chain.startswith("PKUBE-")}
    if ours:
        out = []
        for table in TABLES:
            names = sorted(c for t, c in ours if t == table)
            if names:
                out += [f"*{table}", *(f":{c} - [0:0]" for c in names), *(f"-X {c}" for c in names), "COMMIT"]
        ipt.restore("\n".join(out) + "\n")

