"""iptables commands of the proxy's fallback backend: `iptables-restore --noflush` inputs
applied as one atomic transaction, the built-in chains' jump rules, and a listing of chains.

`command` names the variant: "iptables" (the system's choice, on Debian iptables-nft, which
writes nf_tables through the xtables compatibility layer) or "iptables-legacy" (the old
x_tables kernel interface, for kernels without nf_tables); its -save and -restore go with it.
"""

from __future__ import annotations

import shlex
import subprocess

from pkube.proxy.backend import BackendError

# What -C says when the rule's chain or target chain is missing (nft variant; legacy).
MISSING = ("does not exist", "No chain", "Couldn't load target")


class IptablesError(BackendError):
    """An iptables command failed; the message holds its stderr. A refused iptables-restore
    input changed nothing (the tables are committed whole)."""


class Iptables:
    """Runs `command` (and its -save/-restore) in the caller's network namespace, or in the
    named one `netns` (through `ip netns exec`: tests and benchmarks)."""

    def __init__(self, command: str = "iptables", netns: str | None = None, timeout: float = 60.0):
        self.command, self.timeout = command, timeout
        self.prefix = ["ip", "netns", "exec", netns] if netns else []

    def restore(self, text: str) -> None:
        """Apply `text` with `iptables-restore --noflush`: every table of it, or (IptablesError) none."""
        self._run([f"{self.command}-restore", "-w", "5", "--noflush"], text)

    def save(self, table: str) -> str:
        """`iptables-save -t table`: every chain and rule of it."""
        return self._run([f"{self.command}-save", "-t", table])

    def has_rule(self, table: str, chain: str, rule: str) -> bool:
        """True if `chain` holds `rule` (restore syntax; iptables -C); False if not, or if a chain is missing."""
        argv = [*self.prefix, self.command, "-w", "5", "-t", table, "-C", chain, *shlex.split(rule)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise IptablesError(f"{' '.join(argv)}: {e}") from e
        if done.returncode == 0:
            return True
        if done.returncode == 1 or any(gone in done.stderr for gone in MISSING):
            return False
        raise IptablesError(f"{' '.join(argv)}: {done.stderr.strip() or 'exit ' + str(done.returncode)}")

    def delete_rule(self, table: str, chain: str, rule: str) -> None:
        self._run([self.command, "-w", "5", "-t", table, "-D", chain, *shlex.split(rule)])

    def works(self) -> bool:
        """True when the command runs and the kernel has its tables (a listing of nat)."""
        try:
            self.save("nat")
        except IptablesError:
            return False
        return True

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        argv = [*self.prefix, *argv]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise IptablesError(f"{' '.join(argv)}: {e}") from e
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise IptablesError(f"{' '.join(argv)}: {' '.join(lines[:6]) or 'exit ' + str(done.returncode)}")
        return done.stdout
