"""IP address management for one subnet, persisted in a JSON file under an fcntl lock.

Several processes (pdocker invocations, the kubelet) may allocate at the same time: every
read-modify-write of the state file happens under an exclusive lock on `<file>.lock`, and the
file is replaced atomically. An address is handed out only if no key holds it and the
caller's `is_live(ip)` check says nothing on the host still uses it (a leftover veth, say).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from contextlib import contextmanager
from collections.abc import Callable, Iterator

STATE_VERSION = 1


class IpamError(Exception):
    """The state file is unusable or does not match the subnet."""


class PoolExhausted(IpamError):
    """Every host address of the subnet is allocated or live."""


def _never_live(ip: ipaddress.IPv4Address) -> bool:
    return False


class Ipam:
    """Allocations of `subnet` keyed by a caller-chosen string (a sandbox or container id).

    The first host address is the gateway and is never handed out. Each allocation is a dict
    with at least "ip"; callers may attach more fields (interface names, MAC) with `update`.
    """

    def __init__(self, state_file: str | os.PathLike, subnet: str, gateway: str | None = None):
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise ValueError(f"bad subnet {subnet!r}: {e}") from None
        if self.subnet.num_addresses < 4:
            raise ValueError(f"subnet {subnet} is too small: it needs a gateway and an address")
        self.gateway = ipaddress.IPv4Address(gateway) if gateway else self.subnet.network_address + 1
        if self.gateway not in self.subnet:
            raise ValueError(f"gateway {self.gateway} is outside {self.subnet}")
        self.state_file = os.fspath(state_file)
        self.lock_file = self.state_file + ".lock"

    def allocate(self, key: str, is_live: Callable[[ipaddress.IPv4Address], bool] = _never_live,
                 **fields) -> ipaddress.IPv4Address:
        """The address of `key`: its existing one, else the lowest free address that is not live.

        `fields` are stored with the allocation. Raises PoolExhausted when nothing is free.
        """
        with self._transaction() as allocations:
            if key in allocations:
                return ipaddress.IPv4Address(allocations[key]["ip"])
            taken = {a["ip"] for a in allocations.values()}
            for ip in self.subnet.hosts():
                if ip != self.gateway and str(ip) not in taken and not is_live(ip):
                    allocations[key] = {**fields, "ip": str(ip)}
                    return ip
        raise PoolExhausted(f"no free address in {self.subnet} ({len(taken)} allocated)")

    def update(self, key: str, **fields) -> None:
        """Add fields to an existing allocation. Raises KeyError if `key` holds none."""
        with self._transaction() as allocations:
            if key not in allocations:
                raise KeyError(key)
            allocations[key].update(fields)

    def release(self, key: str) -> dict | None:
        """Free the address of `key`; returns its allocation, or None if it held none."""
        with self._transaction() as allocations:
            return allocations.pop(key, None)

    def get(self, key: str) -> dict | None:
        """The allocation of `key` ({"ip": ..., fields...}), or None."""
        return self.allocations().get(key)

    def allocations(self) -> dict[str, dict]:
        """Every allocation, key -> {"ip": ..., fields...} (a snapshot)."""
        with self._transaction() as allocations:
            return {k: dict(v) for k, v in allocations.items()}

    @contextmanager
    def _transaction(self) -> Iterator[dict]:
        """Yield the allocations under the lock; write them back if they changed."""
        os.makedirs(os.path.dirname(self.state_file) or ".", exist_ok=True)
        with open(self.lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            allocations = self._load()
            before = json.dumps(allocations, sort_keys=True)
            yield allocations
            if json.dumps(allocations, sort_keys=True) != before:
                self._save(allocations)

    def _load(self) -> dict:
        if not os.path.exists(self.state_file):
            return {}
        try:
            with open(self.state_file) as f:
                state = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise IpamError(f"read IPAM state {self.state_file}: {e}") from e
        if state.get("subnet") != str(self.subnet):
            raise IpamError(f"IPAM state {self.state_file} is for subnet {state.get('subnet')}, "
                            f"not {self.subnet}")
        return state.get("allocations", {})

    def _save(self, allocations: dict) -> None:
        state = {"version": STATE_VERSION, "subnet": str(self.subnet), "allocations": allocations}
        directory, name = os.path.split(self.state_file)
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)
