"""The one interface of the proxy's backends (nftables: proxier.Proxier; iptables:
iptproxier.IptablesProxier). The server drives a backend and knows nothing of its rules;
modes.py picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pkube.proxy.proxier import SyncResult


class BackendError(Exception):
    """The kernel's rules could not be written or read (nft or iptables failed; the
    transaction was rolled back whole). Retrying later may succeed."""


class Backend(Protocol):
    """Keeps the kernel's rules equal to the Services it is shown. Calls are serialised."""

    def sync_all(self) -> "SyncResult":
        """Write every rule from nothing in one transaction, removing stale ones. Raises
        BackendError when even the bare base cannot be written."""

    def sync(self, keys: list[str]) -> "SyncResult":
        """Bring the rules of the Services `keys` up to date in one transaction, touching no other Service's."""

    def describe(self) -> str:
        """What the backend writes, for logs: "table ip pkube-proxy", "iptables chains PKUBE-*"."""

    def in_place(self) -> bool:
        """False when the rules were removed behind the backend's back (rebuild with
        sync_all). Raises BackendError when that cannot be read."""

    def prune(self) -> None:
        """Periodic housekeeping; raises BackendError."""
