"""The one place the proxy's backend is chosen: --proxy-mode nftables, iptables or auto
(nftables when nft works here, iptables otherwise), and --cleanup of both backends' state.

nftables "works" when libnftables or the nft command can list the kernel's tables; the
iptables command is the system's `iptables` (Debian: iptables-nft) when it can list the nat
table, else `iptables-legacy` (the x_tables interface, on kernels without nf_tables).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import Callable, Iterable

from pkube.proxy.backend import Backend, BackendError
from pkube.proxy.conntrack import Conntrack
from pkube.proxy.ipt import Iptables
from pkube.proxy.iptproxier import IptablesProxier, remove_all
from pkube.proxy.nft import LibNftables, Nft
from pkube.proxy.proxier import Proxier
from pkube.proxy.rules import ProxyConfig

log = logging.getLogger(__name__)

NFTABLES, IPTABLES, AUTO = "nftables", "iptables", "auto"
MODES = (AUTO, NFTABLES, IPTABLES)
IPTABLES_COMMANDS = ("iptables", "iptables-legacy")     # tried in this order
CLEANUP_COMMANDS = ("iptables-nft", "iptables-legacy")   # both variants' state goes


def nft_works(netns: str | None = None) -> bool:
    """True when nftables can be used here: the library or the command, and kernel support."""
    if netns is None and LibNftables.load() is None and shutil.which("nft") is None:
        return False
    try:
        Nft(netns=netns).table_exists("pkube-probe")
    except BackendError:
        return False
    return True


def working_iptables(netns: str | None = None) -> Iptables | None:
    """The first of IPTABLES_COMMANDS that runs and reaches the kernel's tables; None if none does."""
    for command in IPTABLES_COMMANDS:
        if shutil.which(f"{command}-restore"):
            ipt = Iptables(command, netns=netns)
            if ipt.works():
                return ipt
    return None


def choose(mode: str, netns: str | None = None) -> tuple[str, Iptables | None]:
    """(the mode to run, the iptables commands when it is iptables). Raises BackendError with
    what to install when the mode asked for cannot run here."""
    if mode in (AUTO, NFTABLES) and nft_works(netns):
        return NFTABLES, None
    if mode == NFTABLES:
        raise BackendError("nftables does not work here (apt-get install nftables; a kernel with nf_tables)")
    ipt = working_iptables(netns)
    if ipt is None:
        wanted = "nftables nor iptables works" if mode == AUTO else "iptables does not work"
        raise BackendError(f"{wanted} here (apt-get install nftables iptables)")
    return IPTABLES, ipt


def make_backend(mode: str, ipt: Iptables | None, config: ProxyConfig, services: Callable[[str], dict | None],
                 slices: Callable[[str], list[dict]], service_keys: Callable[[], Iterable[str]],
                 conntrack: Conntrack | None = None, nft: Nft | None = None) -> Backend:
    """The proxier of `mode` (as returned by choose) over the given reads."""
    if mode == IPTABLES:
        return IptablesProxier(config, ipt or Iptables(), services, slices, service_keys, conntrack)
    return Proxier(config, nft or Nft(), services, slices, service_keys, conntrack)


def legacy_in_use(netns: str | None = None) -> bool:
    """True when the namespace has legacy iptables tables (/proc/net/ip_tables_names lists
    them): only then can iptables-legacy hold our chains, and probing it otherwise would load
    its kernel modules."""
    argv = ["cat", "/proc/net/ip_tables_names"]
    done = subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv, capture_output=True, text=True)
    return done.returncode == 0 and bool(done.stdout.split())


def cleanup(table: str, netns: str | None = None, keep: str | None = None) -> list[str]:
    """Delete both backends' state: the nft table, and the PKUBE chains of iptables-nft and
    (when its tables exist) iptables-legacy; all but `keep`'s (NFTABLES or IPTABLES: at start,
    the other mode's rules, left by an earlier run, would still DNAT). The errors, one line
    each (empty: all clean)."""
    errors = []
    if keep != NFTABLES and nft_works(netns):
        try:
            Nft(netns=netns).delete_table(table)
        except BackendError as e:
            errors.append(str(e))
    for command in CLEANUP_COMMANDS if keep != IPTABLES else ():
        if command == "iptables-legacy" and not legacy_in_use(netns):
            continue
        ipt = Iptables(command, netns=netns)
        if shutil.which(f"{command}-restore") and ipt.works():
            try:
                remove_all(ipt)
            except BackendError as e:
                errors.append(str(e))
    return errors
