"""Cluster IP and node port allocation, persisted in the store.

Each range is one object (a ``RangeAllocation``) holding the sorted list of
allocated offsets, at ``/registry/ranges/serviceips`` and
``/registry/ranges/servicenodeports``. Every change goes through
``guaranteed_update``, so concurrent apiserver requests (or several
apiservers) never hand out the same value twice.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional

from pkube.apiserver.storage.interface import KeyExists, NotFound, Storage


class RangeFull(Exception):
    """No free value is left in the range."""


class NotInRange(ValueError):
    """An explicitly requested value lies outside the range."""


class AlreadyAllocated(ValueError):
    """An explicitly requested value is taken."""


class RangeAllocator:
    """Offsets ``0..size-1`` of a range, allocated in the store at ``key``.

    ``first``/``last`` bound the offsets handed out automatically (e.g. a
    network's own address and broadcast are never given).
    """

    def __init__(self, storage: Storage, key: str, name: str, description: str,
                 size: int, first: int = 0, last: Optional[int] = None):
        self.storage, self.key, self.name = storage, key, name
        self.description = description
        self.size, self.first = size, first
        self.last = size - 1 if last is None else last

    async def allocate_next(self) -> int:
        """Take the lowest free offset; RangeFull when none is left."""
        chosen: list[int] = []

        def take(obj: dict) -> dict:
            used = set(obj.get("allocated", []))
            offset = next((o for o in range(self.first, self.last + 1) if o not in used), None)
            if offset is None:
                raise RangeFull(f"range {self.description} is full")
            chosen[:] = [offset]
            return {**obj, "allocated": sorted(used | {offset})}

        await self._update(take)
        return chosen[0]

    async def allocate(self, offset: int) -> None:
        """Take a specific offset; NotInRange or AlreadyAllocated otherwise."""
        if not 0 <= offset < self.size:
            raise NotInRange(f"provided value is not in the valid range ({self.description})")

        def take(obj: dict) -> dict:
            used = set(obj.get("allocated", []))
            if offset in used:
                raise AlreadyAllocated("provided value is already allocated")
            return {**obj, "allocated": sorted(used | {offset})}

        await self._update(take)

    async def release(self, offsets: Iterable[int]) -> None:
        """Give offsets back (unknown ones are ignored)."""
        gone = set(offsets)
        if not gone:
            return

        def free(obj: dict) -> dict:
            return {**obj, "allocated": sorted(set(obj.get("allocated", [])) - gone)}

        await self._update(free)

    async def allocated(self) -> set[int]:
        try:
            return set((await self.storage.get(self.key)).get("allocated", []))
        except NotFound:
            return set()

    async def _update(self, fn) -> None:
        await self._ensure_exists()
        await self.storage.guaranteed_update(self.key, fn)

    async def _ensure_exists(self) -> None:
        try:
            await self.storage.get(self.key)
        except NotFound:
            try:
                await self.storage.create(self.key, {
                    "apiVersion": "v1", "kind": "RangeAllocation",
                    "metadata": {"name": self.name}, "range": self.description, "allocated": []})
            except KeyExists:
                pass


class ServiceIPAllocator:
    """Cluster IPs from a CIDR (the network address and broadcast are never handed out)."""

    def __init__(self, storage: Storage, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        size = self.network.num_addresses
        self.range = RangeAllocator(storage, "/registry/ranges/serviceips", "serviceips",
                                    str(self.network), size, first=1, last=max(1, size - 2))

    async def allocate_next(self) -> str:
        return str(self.network[await self.range.allocate_next()])

    async def allocate(self, ip: str) -> None:
        """Reserve an explicit IP; ValueError (NotInRange/AlreadyAllocated) when it cannot be."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise NotInRange("must be a valid IP address") from None
        if address not in self.network:
            raise NotInRange(f"provided IP is not in the valid range. The range of valid IPs is {self.network}")
        await self.range.allocate(int(address) - int(self.network.network_address))

    async def release(self, ips: Iterable[str]) -> None:
        offsets = []
        for ip in ips:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if address in self.network:
                offsets.append(int(address) - int(self.network.network_address))
        await self.range.release(offsets)


class NodePortAllocator:
    """Node ports from an inclusive port range."""

    def __init__(self, storage: Storage, port_range: tuple[int, int]):
        self.low, self.high = port_range
        self.range = RangeAllocator(storage, "/registry/ranges/servicenodeports", "servicenodeports",
                                    f"{self.low}-{self.high}", self.high - self.low + 1)

    async def allocate_next(self) -> int:
        return self.low + await self.range.allocate_next()

    async def allocate(self, port: int) -> None:
        if not self.low <= port <= self.high:
            raise NotInRange(f"provided port is not in the valid range. The range of valid ports is {self.low}-{self.high}")
        await self.range.allocate(port - self.low)

    async def release(self, ports: Iterable[int]) -> None:
        await self.range.release(p - self.low for p in ports if self.low <= p <= self.high)
