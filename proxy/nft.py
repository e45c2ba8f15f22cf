"""The `nft` command: scripts applied as one atomic transaction (`nft -f -`), and a few reads."""

from __future__ import annotations

import json
import subprocess


class NftError(Exception):
    """`nft` failed; the message holds its stderr (the transaction was rolled back whole)."""


class Nft:
    """Runs `nft` in the caller's network namespace, or in the named one `netns` (through
    `ip netns exec`: tests and benchmarks)."""

    def __init__(self, nft: str = "nft", netns: str | None = None, timeout: float = 60.0):
        self.argv = ["ip", "netns", "exec", netns, nft] if netns else [nft]
        self.timeout = timeout

    def apply(self, script: str) -> None:
        """Run `script` as one transaction: all of it is applied, or (NftError) none."""
        self._run(["-f", "-"], script)

    def table_exists(self, table: str) -> bool:
        """True if `ip <table>` exists (a listing of table names only: cheap at any size)."""
        listing = json.loads(self._run(["-j", "list", "tables", "ip"]) or "{}")
        return any(item.get("table", {}).get("name") == table for item in listing.get("nftables", []))

    def list_table(self, table: str) -> str:
        """`nft list table ip <table>` (slow for big tables: for tests and people)."""
        return self._run(["list", "table", "ip", table])

    def delete_table(self, table: str) -> None:
        """Delete `ip <table>` if it exists."""
        self.apply(f"add table ip {table}\ndelete table ip {table}\n")

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        argv = [*self.argv, *args]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NftError(f"{' '.join(argv)}: {e}") from e
        if done.returncode != 0:
            raise NftError(f"{' '.join(argv)}: {_first_lines(done.stderr) or 'exit ' + str(done.returncode)}")
        return done.stdout


def _first_lines(text: str, limit: int = 12) -> str:
    """nft's error for a huge script can be long: its first lines say what failed."""
    lines = text.strip().splitlines()
    return "\n".join(lines[:limit] + ([f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []))
