"""Port publishing and masquerade for one bridge: nftables, or iptables where `nft` is missing.

Rule layout (nftables; the iptables backend mirrors it with chains named after the table):

    table ip <table>
      prerouting  (nat, dstnat)   fib daddr type local jump ports
      output      (nat, -100)     fib daddr type local jump ports    <- 127.0.0.1:PORT works
      postrouting (nat, srcnat)   subnet -> not the bridge: masquerade          (egress; not to
                                  the cluster's pod network, when given: pods see pod IPs)
                                  127.0.0.0/8 -> bridge: masquerade            (localhost DNAT)
                                  subnet -> bridge, DNATed: masquerade         (hairpin)
      forward     (filter)        accept to and from the bridge
      ports                       one `jump c_<hash>` per published container
      c_<hash>                    that container's DNAT rules, tcp and udp

Rule text is made by pure functions (unit-tested); the backends only run it.
"""

from __future__ import annotations

import errno
import ipaddress
import json

from pkube.runtime.records import Record

PROTOCOLS = ("tcp", "udp")


class FirewallError(Exception):
    """An nft or iptables command failed; the message holds the command and its stderr."""


class PortMapping(Record):
    """HOST_IP:HOST_PORT -> CONTAINER_PORT/PROTOCOL. An empty host_ip means every host address."""

    FIELDS = ("host_port", "container_port", ("protocol", "tcp"), ("host_ip", ""))
    FROZEN = True

    def __post_init__(self):
        for name in ("host_port", "container_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"bad {name.replace('_', ' ')} {value!r}: must be 1-65535")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"bad protocol {self.protocol!r}: must be tcp or udp")
        if self.host_ip not in ("", "0.0.0.0"):
            try:
                ipaddress.IPv4Address(self.host_ip)
            except ValueError:
                raise ValueError(f"bad host IP {self.host_ip!r}: must be an IPv4 address") from None

    @classmethod
    def parse(cls, text: str) -> "PortMapping":
        """Parse docker's `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]`. Raises ValueError."""
        spec, _, protocol = text.partition("/")
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[-2:]):
            raise ValueError(f"bad port mapping {text!r}: want [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]")
        host_ip = parts[0] if len(parts) == 3 else ""
        return cls(int(parts[-2]), int(parts[-1]), protocol or "tcp", host_ip)

    @property
    def bound_ip(self) -> str | None:
        """The one host address this mapping is bound to, or None for all of them."""
        return self.host_ip if self.host_ip not in ("", "0.0.0.0") else None


def overlaps(a: PortMapping, b: PortMapping) -> bool:
    """True if `a` and `b` would claim the same host port (same protocol, address or any)."""
    return (a.protocol == b.protocol and a.host_port == b.host_port
            and (a.bound_ip is None or b.bound_ip is None or a.bound_ip == b.bound_ip))


def _describe(m: PortMapping) -> str:
    return f"{m.bound_ip or '0.0.0.0'}:{m.host_port}/{m.protocol}"


def find_conflict(mappings: list[PortMapping], published: dict[str, list[PortMapping]]) -> str | None:
    """Why `mappings` cannot be published next to `published` (key -> mappings), or None."""
    for i, m in enumerate(mappings):
        if any(overlaps(m, other) for other in mappings[:i]):
            return f"host port {_describe(m)} is asked for twice"
        for key, theirs in published.items():
            if any(overlaps(m, other) for other in theirs):
                return f"host port {_describe(m)} is already allocated (by {key})"
    return None


def host_port_taken(mappings: list[PortMapping]) -> str | None:
    """Why a host process makes one of `mappings` unusable (it is bound there), or None.

    Raises ValueError if a mapping's host IP is not an address of this host."""
    import socket   # imported where used: a `pdocker run` without -p needs none
    for m in mappings:
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((m.bound_ip or "0.0.0.0", m.host_port))
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    raise ValueError(f"host IP {m.bound_ip} is not an address of this host") from None
                return f"host port {_describe(m)} is in use by a host process ({e.strerror})"
    return None


def container_chain(key: str) -> str:
    """The name of the per-container chain of `key` (short, stable, valid for nft and iptables)."""
    import hashlib   # imported where used: a `pdocker run` without -p needs none
    return "c_" + hashlib.sha256(key.encode()).hexdigest()[:12]


# ---- nftables text -----------------------------------------------------------------------

NFT_BASE_CHAINS = {
    "prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "output": "type nat hook output priority -100; policy accept;",
    "postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "forward": "type filter hook forward priority filter; policy accept;",
}


def nft_base_rules(bridge: str, subnet: str, no_masquerade: str = "") -> dict[str, list[str]]:
    """The rules of each base chain, written the way `nft list` prints them back. Traffic to
    `no_masquerade` (the cluster's pod network, other nodes' pods) keeps its pod source."""
    keep = f"ip daddr != {no_masquerade} " if no_masquerade else ""
    return {
        "prerouting": ["fib daddr type local jump ports"],
        "output": ["fib daddr type local jump ports"],
        "postrouting": [
            f'ip saddr {subnet} {keep}oifname != "{bridge}" masquerade',
            f'ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade',
            f'ip saddr {subnet} oifname "{bridge}" ct status dnat masquerade',
        ],
        "forward": [f'iifname "{bridge}" accept', f'oifname "{bridge}" accept'],
    }


def nft_base_script(table: str, bridge: str, subnet: str, no_masquerade: str = "") -> str:
    """An atomic, idempotent `nft -f` script: the table and its base chains, rules rewritten,
    leaving `ports` and the per-container chains as they are."""
    lines = [f"add table ip {table}"]
    lines += [f"add chain ip {table} {name} {{ {hook} }}" for name, hook in NFT_BASE_CHAINS.items()]
    lines += [f"add chain ip {table} ports"]
    lines += [f"flush chain ip {table} {name}" for name in NFT_BASE_CHAINS]
    lines += [f"add rule ip {table} {name} {rule}"
              for name, chain in nft_base_rules(bridge, subnet, no_masquerade).items() for rule in chain]
    return "\n".join(lines) + "\n"


def nft_chain_rules(listing: str) -> dict[str, list[str]]:
    """The rules of each chain in `nft list table` text (chain headers and comments left out)."""
    chains: dict[str, list[str]] = {}
    current = None
    for raw in listing.splitlines():
        line = raw.strip()
        if line.startswith("chain ") and line.endswith("{"):
            current = chains.setdefault(line.split()[1], [])
        elif line == "}":
            current = None
        elif current is not None and line and not line.startswith(("type ", "policy ")):
            current.append(line)
    return chains


def nft_base_in_place(listing: str, bridge: str, subnet: str, no_masquerade: str = "") -> bool:
    """True if `listing` (of the table) already has exactly the base rules and `ports`."""
    chains = nft_chain_rules(listing)
    return "ports" in chains and all(chains.get(name) == rules
                                     for name, rules in nft_base_rules(bridge, subnet, no_masquerade).items())


def nft_dnat_rule(ip: str, mapping: PortMapping) -> str:
    """The DNAT rule of one mapping, as it sits in a per-container chain."""
    match = f"ip daddr {mapping.bound_ip} " if mapping.bound_ip else ""
    return f"{match}{mapping.protocol} dport {mapping.host_port} dnat to {ip}:{mapping.container_port}"


def nft_publish_script(table: str, key: str, ip: str, mappings: list[PortMapping],
                       stale_handles: list[int]) -> str:
    """Replace `key`'s chain and its jump from `ports` (whose old handles are `stale_handles`)."""
    chain = container_chain(key)
    lines = [f"add chain ip {table} {chain}", f"flush chain ip {table} {chain}"]
    lines += [f"delete rule ip {table} ports handle {h}" for h in stale_handles]
    lines += [f"add rule ip {table} {chain} {nft_dnat_rule(ip, m)}" for m in mappings]
    comment = '"' + "".join(c if c.isascii() and (c.isalnum() or c in "-_.:") else "_" for c in key[:120]) + '"'
    lines.append(f"add rule ip {table} ports jump {chain} comment {comment}")
    return "\n".join(lines) + "\n"


def nft_unpublish_script(table: str, key: str, stale_handles: list[int]) -> str:
    chain = container_chain(key)
    lines = [f"delete rule ip {table} ports handle {h}" for h in stale_handles]
    lines += [f"add chain ip {table} {chain}", f"flush chain ip {table} {chain}",
              f"delete chain ip {table} {chain}"]
    return "\n".join(lines) + "\n"


def jump_handles(listing: dict, chain: str) -> list[int]:
    """Handles of the rules in an `nft -j -a list chain` answer that jump to `chain`."""
    handles = []
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if rule and any(e.get("jump", {}).get("target") == chain for e in rule.get("expr", [])):
            handles.append(rule["handle"])
    return handles


# ---- iptables text -----------------------------------------------------------------------

def ipt_names(table: str) -> dict[str, str]:
    """Chain names of the iptables backend (at most 28 characters)."""
    prefix = table.upper()[:14]
    return {"ports": f"{prefix}-PORTS", "post": f"{prefix}-POST", "fwd": f"{prefix}-FWD"}


def ipt_container_chain(table: str, key: str) -> str:
    return f"{table.upper()[:14]}-{container_chain(key)[2:]}"


def ipt_base_rules(table: str, bridge: str, subnet: str, no_masquerade: str = "") -> list[list[str]]:
    """(table, chain, rule...) rules of the base layout; hooks first, then chain contents."""
    n = ipt_names(table)
    local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", n["ports"]]
    return [
        ["nat", "PREROUTING", *local],
        ["nat", "OUTPUT", *local],
        ["nat", "POSTROUTING", "-j", n["post"]],
        ["filter", "FORWARD", "-j", n["fwd"]],
        ["nat", n["post"], "-s", subnet, *(["!", "-d", no_masquerade] if no_masquerade else []),
         "!", "-o", bridge, "-j", "MASQUERADE"],
        ["nat", n["post"], "-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"],
        ["nat", n["post"], "-s", subnet, "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT",
         "-j", "MASQUERADE"],
        ["filter", n["fwd"], "-i", bridge, "-j", "ACCEPT"],
        ["filter", n["fwd"], "-o", bridge, "-j", "ACCEPT"],
    ]


def ipt_dnat_rule(ip: str, mapping: PortMapping) -> list[str]:
    match = ["-d", mapping.bound_ip] if mapping.bound_ip else []
    return [*match, "-p", mapping.protocol, "--dport", str(mapping.host_port),
            "-j", "DNAT", "--to-destination", f"{ip}:{mapping.container_port}"]


# ---- backends ------------------------------------------------------------------------------

def _run(argv: list[str], stdin: str | None = None) -> str:
    import subprocess   # imported where used: a `pdocker run` without -p needs none
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirewallError(f"{' '.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise FirewallError(f"{' '.join(argv)}: {done.stderr.strip() or 'exit ' + str(done.returncode)}"
                            + (f"\n{stdin}" if stdin else ""))
    return done.stdout


class NftFirewall:
    """nftables: everything in one `ip <table>` table, changed by atomic `nft -f -` scripts."""

    def __init__(self, table: str, bridge: str, subnet: str, nft: str = "nft", no_masquerade: str = ""):
        self.table, self.bridge, self.subnet, self.nft = table, bridge, subnet, nft
        self.no_masquerade = no_masquerade

    def ensure(self) -> None:
        """Write the base chains unless `nft list` shows them already (a read is far cheaper
        than an nft transaction)."""
        import subprocess   # imported where used: a `pdocker run` without -p needs none
        listing = subprocess.run([self.nft, "list", "table", "ip", self.table],
                                 capture_output=True, text=True)
        if listing.returncode == 0 and nft_base_in_place(listing.stdout, self.bridge, self.subnet,
                                                         self.no_masquerade):
            return
        _run([self.nft, "-f", "-"], nft_base_script(self.table, self.bridge, self.subnet, self.no_masquerade))

    def publish(self, key: str, ip: str, mappings: list[PortMapping]) -> None:
        stale = self._jump_handles(key)
        _run([self.nft, "-f", "-"], nft_publish_script(self.table, key, ip, mappings, stale))

    def unpublish(self, key: str) -> None:
        try:
            stale = self._jump_handles(key)
        except FirewallError:
            if self._table_exists():
                raise
            return  # no table, nothing published
        _run([self.nft, "-f", "-"], nft_unpublish_script(self.table, key, stale))

    def teardown(self) -> None:
        if self._table_exists():
            _run([self.nft, "delete", "table", "ip", self.table])

    def published(self) -> list[str]:
        """Names of the per-container chains that `ports` jumps to."""
        listing = json.loads(_run([self.nft, "-j", "list", "chain", "ip", self.table, "ports"]))
        return [e["jump"]["target"] for item in listing.get("nftables", []) if "rule" in item
                for e in item["rule"]["expr"] if "jump" in e]

    def _jump_handles(self, key: str) -> list[int]:
        listing = json.loads(_run([self.nft, "-j", "-a", "list", "chain", "ip", self.table, "ports"]))
        return jump_handles(listing, container_chain(key))

    def _table_exists(self) -> bool:
        import subprocess   # imported where used: a `pdocker run` without -p needs none
        return subprocess.run([self.nft, "list", "table", "ip", self.table],
                              capture_output=True).returncode == 0


class IptablesFirewall:
    """iptables: chains named after the table, hooked from the built-in chains."""

    def __init__(self, table: str, bridge: str, subnet: str, iptables: str = "iptables", no_masquerade: str = ""):
        self.table, self.bridge, self.subnet, self.iptables = table, bridge, subnet, iptables
        self.no_masquerade = no_masquerade
        self.names = ipt_names(table)

    def ensure(self) -> None:
        for nat_or_filter, chain in [("nat", self.names["ports"]), ("nat", self.names["post"]),
                                     ("filter", self.names["fwd"])]:
            self._new_chain(nat_or_filter, chain)
        for t, chain, *rule in ipt_base_rules(self.table, self.bridge, self.subnet, self.no_masquerade):
            self._append_once(t, chain, rule)

    def publish(self, key: str, ip: str, mappings: list[PortMapping]) -> None:
        chain = ipt_container_chain(self.table, key)
        self._new_chain("nat", chain)
        _run([self.iptables, "-w", "-t", "nat", "-F", chain])
        for m in mappings:
            _run([self.iptables, "-w", "-t", "nat", "-A", chain, *ipt_dnat_rule(ip, m)])
        self._append_once("nat", self.names["ports"], ["-j", chain])

    def unpublish(self, key: str) -> None:
        chain = ipt_container_chain(self.table, key)
        while self._exists("nat", self.names["ports"], ["-j", chain]):
            _run([self.iptables, "-w", "-t", "nat", "-D", self.names["ports"], "-j", chain])
        self._delete_chain("nat", chain)

    def teardown(self) -> None:
        for t, chain, *rule in ipt_base_rules(self.table, self.bridge, self.subnet)[:4]:
            while self._exists(t, chain, rule):
                _run([self.iptables, "-w", "-t", t, "-D", chain, *rule])
        mine = [c for c in self._chains("nat") if c.startswith(self.table.upper()[:14] + "-")]
        for chain in mine:
            _run([self.iptables, "-w", "-t", "nat", "-F", chain])
        for chain in mine:
            _run([self.iptables, "-w", "-t", "nat", "-X", chain])
        self._delete_chain("filter", self.names["fwd"])

    def published(self) -> list[str]:
        out = _run([self.iptables, "-w", "-t", "nat", "-S", self.names["ports"]])
        return [line.split()[-1] for line in out.splitlines() if line.startswith("-A ")]

    def _chains(self, t: str) -> list[str]:
        out = _run([self.iptables, "-w", "-t", t, "-S"])
        return [line.split()[1] for line in out.splitlines() if line.startswith("-N ")]

    def _new_chain(self, t: str, chain: str) -> None:
        if chain not in self._chains(t):
            _run([self.iptables, "-w", "-t", t, "-N", chain])

    def _delete_chain(self, t: str, chain: str) -> None:
        if chain in self._chains(t):
            _run([self.iptables, "-w", "-t", t, "-F", chain])
            _run([self.iptables, "-w", "-t", t, "-X", chain])

    def _exists(self, t: str, chain: str, rule: list[str]) -> bool:
        import subprocess   # imported where used: a `pdocker run` without -p needs none
        return subprocess.run([self.iptables, "-w", "-t", t, "-C", chain, *rule],
                              capture_output=True).returncode == 0

    def _append_once(self, t: str, chain: str, rule: list[str]) -> None:
        if not self._exists(t, chain, rule):
            _run([self.iptables, "-w", "-t", t, "-A", chain, *rule])


def check_table_name(table: str) -> str:
    """Return `table`, or raise ValueError unless it is 1-20 letters, digits or underscores."""
    if not table or len(table) > 20 or not all(c.isalnum() or c == "_" for c in table):
        raise ValueError(f"bad firewall table name {table!r}: 1-20 letters, digits or _")
    return table


def make_firewall(table: str, bridge: str, subnet: str, backend: str = "auto", no_masquerade: str = ""):
    """The firewall backend: "nft", "iptables", or "auto" (nft when the `nft` command exists).
    Egress from `subnet` is masqueraded except towards `no_masquerade` (a CIDR, or "")."""
    import shutil   # imported where used: a `pdocker run` without -p needs none
    check_table_name(table)
    if backend == "auto":
        backend = "nft" if shutil.which("nft") else "iptables"
    if backend == "nft":
        return NftFirewall(table, bridge, subnet, no_masquerade=no_masquerade)
    if backend == "iptables":
        if not shutil.which("iptables"):
            raise FirewallError("publish ports: neither nft nor iptables is installed")
        return IptablesFirewall(table, bridge, subnet, no_masquerade=no_masquerade)
    raise ValueError(f"bad firewall backend {backend!r}: want auto, nft or iptables")
