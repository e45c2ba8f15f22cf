"""The proxier of the iptables backend: the nftables Proxier's bookkeeping (a diff per
Service, clashes, conntrack of gone flows) over iptrules' chains, applied through
`iptables-restore --noflush`.

`sync_all` lists the nat and filter chains, writes every PKUBE chain in one input (stale ones
deleted in it), then makes sure the built-in chains jump to ours (`iptables -C`, inserted
when missing). `sync` writes one input per round rewriting the changed Services only; when it
is refused (someone deleted a rule `-D` names), the whole set is written again, as kube-proxy
follows a failed partial sync with a full one.
"""

from __future__ import annotations

import logging

from pkube.proxy.backend import BackendError
from pkube.proxy.ipt import Iptables
from pkube.proxy.iptrules import JUMPS, NAT, TABLES, IptRules, diff_text, full_text, service_rules
from pkube.proxy.proxier import Proxier, SyncResult, _Plan

log = logging.getLogger(__name__)


class IptablesProxier(Proxier):
    """As Proxier, writing iptables chains through `ipt` (the `nft` attribute holds it too,
    for the shared code; hairpin is per endpoint chain here, so prune has nothing to do)."""

    def __init__(self, config, ipt: Iptables, services, slices, service_keys, conntrack=None):
        super().__init__(config, ipt, services, slices, service_keys, conntrack)
        self.ipt = ipt

    def describe(self) -> str:
        return f"{self.ipt.command} chains PKUBE-*"

    def sync_all(self) -> SyncResult:
        """As Proxier.sync_all, then the jumps from the built-in chains (checked, inserted when missing)."""
        result = super().sync_all()
        self.ensure_jumps()
        return result

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

    def ensure_jumps(self) -> None:
        """Each of JUMPS first in its built-in chain unless it is there already."""
        for table, chain, rule in JUMPS:
            if not self.ipt.has_rule(table, chain, rule):
                self.ipt.insert_rule(table, chain, rule)

    def in_place(self) -> bool:
        """False when a jump from a built-in chain is gone (iptables -F, or -X of our chains)."""
        return all(self.ipt.has_rule(table, chain, rule) for table, chain, rule in JUMPS)

    def prune(self) -> None:
        """Nothing to prune: hairpin is a rule of each endpoint chain."""

    def _service_rules(self, service: dict, slices: list[dict]) -> IptRules:
        return service_rules(service, slices, self.config)

    def _script(self, plan: _Plan) -> str:
        return diff_text(plan.changes)

    def _full_script(self, services: dict[str, IptRules]) -> str:
        existing = {(table, chain) for table in TABLES for chain in self.ipt.chains(table)}
        return full_text(services, existing)

    def _base_script(self) -> str:
        return full_text({}, {(table, chain) for table in TABLES for chain in self.ipt.chains(table)})

    def _write(self, script: str) -> None:
        self.ipt.restore(script)


def remove_all(ipt: Iptables) -> None:
    """Delete the jumps to our chains and every PKUBE chain of the nat and filter tables (--cleanup)."""
    for table, chain, rule in JUMPS:
        while ipt.has_rule(table, chain, rule):
            ipt.delete_rule(table, chain, rule)
    ours = {(table, chain) for table in TABLES for chain in ipt.chains(table) if chain.startswith("PKUBE-")}
    if ours:
        out = []
        for table in TABLES:
            names = sorted(c for t, c in ours if t == table)
            if names:
                out += [f"*{table}", *(f":{c} - [0:0]" for c in names), *(f"-X {c}" for c in names), "COMMIT"]
        ipt.restore("\n".join(out) + "\n")


__all__ = ["IptablesProxier", "remove_all", "NAT"]
