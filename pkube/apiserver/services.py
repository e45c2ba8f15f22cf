"""Service-specific write hooks: cluster IP and node port allocation.

On create the service gets a cluster IP (unless headless or ExternalName)
and node ports for NodePort/LoadBalancer ports; explicit values are honoured
or refused with 422. On update the old values are carried over; new node
ports are reserved before the write. On delete everything is freed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pkube.api.kinds import ResourceInfo
from pkube.apiserver import errors
from pkube.apiserver.allocators import (AlreadyAllocated, NodePortAllocator, NotInRange, RangeFull,
                                  ServiceIPAllocator)

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@dataclass
class Reserved:
    """Values taken for one write, to be given back if the write fails."""

    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


class NeedsAllocation(Exception):
    """A pure update step found ports that need reserving first."""

    def __init__(self, explicit: list[int], auto: int, service: dict):
        super().__init__(f"needs {explicit} and {auto} new node ports")
        self.explicit, self.auto, self.service = explicit, auto, service


def _spec(svc: dict) -> dict:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(svc: dict) -> list[dict]:
    """The spec's ports that are objects ([] when ``ports`` is no list: validation says so)."""
    ports = _spec(svc).get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _wants_ip(svc: dict) -> bool:
    return _spec(svc).get("type", "ClusterIP") != "ExternalName" and _spec(svc).get("clusterIP") != "None"


def _wants_node_ports(svc: dict) -> bool:
    return _spec(svc).get("type") in NODE_PORT_TYPES


def cluster_ip(svc: dict) -> str:
    return _spec(svc).get("clusterIP") or ""


def node_ports(svc: dict) -> set[int]:
    return {p["nodePort"] for p in _ports(svc) if isinstance(p.get("nodePort"), int)}


class ServiceAllocations:
    """Allocation hooks the resource store calls for Services."""

    def __init__(self, ips: ServiceIPAllocator, ports: NodePortAllocator, info: ResourceInfo):
        self.ips, self.ports, self.info = ips, ports, info

    async def on_create(self, svc: dict) -> Reserved:
        """Allocate for a new service (in place); 422 Invalid on a taken or bad value."""
        reserved = Reserved()
        try:
            await self._allocate_ip(svc, reserved)
            await self._allocate_ports(svc, reserved)
        except BaseException:
            await self.give_back(reserved)
            raise
        return reserved

    async def _allocate_ip(self, svc: dict, reserved: Reserved) -> None:
        spec = svc.setdefault("spec", {})
        if not _wants_ip(svc):
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return
        ip = spec.get("clusterIP")
        try:
            if ip:
                await self.ips.allocate(ip)
            else:
                ip = await self.ips.allocate_next()
        except (NotInRange, AlreadyAllocated) as exc:
            raise self._invalid(svc, "spec.clusterIPs", f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: {exc}')
        except RangeFull as exc:
            raise errors.internal_error(f"failed to allocate a serviceIP: {exc}")
        reserved.ips.append(ip)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]

    async def _allocate_ports(self, svc: dict, reserved: Reserved) -> None:
        if not _wants_node_ports(svc):
            return
        for index, port in enumerate(_ports(svc)):
            wanted = port.get("nodePort")
            try:
                if wanted:
                    await self.ports.allocate(int(wanted))
                else:
                    wanted = port["nodePort"] = await self.ports.allocate_next()
            except (NotInRange, AlreadyAllocated, ValueError) as exc:
                raise self._invalid(svc, f"spec.ports[{index}].nodePort", f"Invalid value: {wanted}: {exc}")
            except RangeFull as exc:
                raise errors.internal_error(f"failed to allocate a nodePort: {exc}")
            reserved.ports.append(int(wanted))

    def carry(self, new: dict, old: dict, pool: list[int]) -> None:
        """Pure step of an update: keep old allocations on ``new`` (in place).

        Ports that need a value that neither ``old`` nor ``pool`` holds raise
        NeedsAllocation; the caller reserves them and calls again.
        """
        spec = new.setdefault("spec", {})
        if not isinstance(spec, dict):
            return      # validation refuses it (422) once this step is done
        if _wants_ip(new) and _wants_ip(old) and cluster_ip(old):
            spec.setdefault("clusterIP", cluster_ip(old))
            spec.setdefault("clusterIPs", [cluster_ip(old)])
            if spec.get("clusterIP") in ("", None):
                spec["clusterIP"], spec["clusterIPs"] = cluster_ip(old), [cluster_ip(old)]
        if not _wants_node_ports(new):
            for port in _ports(new):
                port.pop("nodePort", None)
            return
        owned = node_ports(old) | set(pool)
        free_pool = [p for p in pool if p not in node_ports(new)]
        old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in _ports(old)}
        explicit, missing = [], 0
        for port in _ports(new):
            if not port.get("nodePort"):
                previous = old_by_port.get((port.get("port"), port.get("protocol", "TCP")))
                if previous and previous not in node_ports(new):
                    port["nodePort"] = previous
                elif free_pool:
                    port["nodePort"] = free_pool.pop(0)
                else:
                    missing += 1
            elif port["nodePort"] not in owned:
                explicit.append(port["nodePort"])
        if explicit or missing:
            raise NeedsAllocation(explicit, missing, new)

    async def reserve(self, svc: dict, need: NeedsAllocation, pool: list[int]) -> None:
        """Reserve what ``carry`` asked for into ``pool``; 422 on a taken port."""
        for index, port in enumerate(_ports(svc)):
            if port.get("nodePort") in need.explicit:
                try:
                    await self.ports.allocate(int(port["nodePort"]))
                except (NotInRange, AlreadyAllocated, ValueError) as exc:
                    raise self._invalid(svc, f"spec.ports[{index}].nodePort",
                                        f"Invalid value: {port['nodePort']}: {exc}")
                pool.append(int(port["nodePort"]))
        for _ in range(need.auto):
            try:
                pool.append(await self.ports.allocate_next())
            except RangeFull as exc:
                raise errors.internal_error(f"failed to allocate a nodePort: {exc}")

    async def after_update(self, old: dict, new: dict, pool: list[int]) -> None:
        """Free what ``old`` held and ``new`` no longer uses, and unused pool values."""
        kept = node_ports(new)
        await self.ports.release([p for p in node_ports(old) | set(pool) if p not in kept])
        if cluster_ip(old) and _wants_ip(old) and cluster_ip(old) != cluster_ip(new):
            await self.ips.release([cluster_ip(old)])

    async def on_delete(self, svc: dict) -> None:
        """Free everything a removed service held."""
        await self.give_back(Reserved([cluster_ip(svc)] if _wants_ip(svc) and cluster_ip(svc) else [],
                                      sorted(node_ports(svc))))

    async def give_back(self, reserved: Reserved) -> None:
        await self.ips.release(reserved.ips)
        await self.ports.release(reserved.ports)

    def _invalid(self, svc: dict, field_path: str, message: str) -> errors.ApiError:
        name = svc.get("metadata", {}).get("name", "")
        return errors.invalid(self.info, name, [{"reason": "FieldValueInvalid", "field": field_path,
                                                 "message": message}])
