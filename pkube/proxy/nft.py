"""nftables scripts applied as one atomic transaction, and a few reads.

Scripts go through libnftables (the library behind the `nft` command, loaded with ctypes)
when it loads: in-process it costs ~4 ms a small transaction where starting `nft -f -` costs
~20 ms with a big table (measured by bench/network.py). Otherwise, and in a named network
namespace (tests), through the `nft` command. Both take exactly `nft -f` text.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import threading

from pkube.proxy.backend import BackendError


class NftError(BackendError):
    """`nft` failed; the message holds its stderr (the transaction was rolled back whole)."""


class Nft:
    """Runs `nft` in the caller's network namespace, or in the named one `netns` (through
    `ip netns exec`: tests and benchmarks)."""

    def __init__(self, nft: str = "nft", netns: str | None = None, timeout: float = 60.0,
                 library: bool = True):
        self.argv = ["ip", "netns", "exec", netns, nft] if netns else [nft]
        self.timeout = timeout
        self._lib = LibNftables.load() if library and not netns else None

    def apply(self, script: str) -> None:
        """Run `script` as one transaction: all of it is applied, or (NftError) none."""
        if self._lib is not None:
            self._lib.run(script)
        else:
            self._run(["-f", "-"], script)

    @property
    def uses_library(self) -> bool:
        """True when scripts go through libnftables.so.1 in this process, False when through the nft binary."""
        return self._lib is not None

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


class LibNftables:
    """One libnftables context (its own netlink socket, in the namespace it was made in);
    calls are serialised, from any thread."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib, self._lock = lib, threading.Lock()
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    @classmethod
    def load(cls) -> "LibNftables | None":
        """The library, or None when libnftables.so.1 is not installed (use the command)."""
        try:
            return cls(ctypes.CDLL("libnftables.so.1"))
        except OSError:
            return None

    def run(self, script: str) -> None:
        """Run `script` (nft -f text); NftError with nft's messages if it is refused."""
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            self._lib.nft_ctx_get_output_buffer(self._ctx)              # drain it
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(f"libnftables: {_first_lines(error) or 'error ' + str(rc)}")


def _first_lines(text: str, limit: int = 12) -> str:
    """nft's error for a huge script can be long: its first lines say what failed."""
    lines = text.strip().splitlines()
    return "\n".join(lines[:limit] + ([f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []))
