"""Node IPAM controller: each Node gets ``spec.podCIDR`` (and ``podCIDRs``) from the cluster CIDR.

Kubernetes' range allocator: the cluster CIDR (default 10.244.0.0/16) is cut
into subnets of ``node_cidr_mask_size`` bits (default /24); a Node without a
podCIDR gets the next free one, never one another Node holds. Before the
first allocation the controller learns every podCIDR already set on the Nodes
in its cache, so a restart never hands one out twice. A deleted Node's
subnet is released. ``spec.podCIDR`` is immutable once set, so a Node that
already has one (even outside the cluster CIDR) keeps it.

Options (``ctx.options``): ``cluster_cidr``, ``node_cidr_mask_size``.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Optional

from pkube.client.resources import NODES
from pkube.controllers.base import Controller, ControllerContext, TemporaryError

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK = 24
EXHAUSTED_RETRY = 30.0


class CidrAllocator:
    """The subnets of ``cluster_cidr`` of prefix length ``mask``: which are taken, which is next."""

    def __init__(self, cluster_cidr: str = DEFAULT_CLUSTER_CIDR, mask: int = DEFAULT_NODE_MASK):
        self.network = ipaddress.ip_network(cluster_cidr)
        if not self.network.prefixlen <= mask <= self.network.max_prefixlen:
            raise ValueError(f"node mask /{mask} does not fit in cluster CIDR {cluster_cidr}")
        self.mask = mask
        self.size = 2 ** (mask - self.network.prefixlen)
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> Optional[int]:
        """The subnet number of ``cidr``; None when it is not one of our subnets."""
        try:
            subnet = ipaddress.ip_network(cidr)
        except ValueError:
            return None
        if subnet.prefixlen != self.mask or not subnet.subnet_of(self.network):
            return None
        return (int(subnet.network_address) - int(self.network.network_address)) >> \
            (self.network.max_prefixlen - self.mask)

    def _cidr(self, index: int) -> str:
        step = 1 << (self.network.max_prefixlen - self.mask)
        address = ipaddress.ip_address(int(self.network.network_address) + index * step)
        return f"{address}/{self.mask}"

    def occupy(self, cidr: str) -> bool:
        """Mark ``cidr`` taken; False when it is not one of our subnets (then nothing changes)."""
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def allocate(self) -> Optional[str]:
        """The next free subnet, now taken; None when every one is."""
        for offset in range(self.size):
            index = (self._next + offset) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return self._cidr(index)
        return None

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self._used.discard(index)

    @property
    def free(self) -> int:
        return self.size - len(self._used)


def node_cidr(node: dict) -> Optional[str]:
    spec = node.get("spec") or {}
    return spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), None)


class NodeIpamController(Controller):
    name = "nodeipam"

    def __init__(self, ctx: ControllerContext, cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
                 mask: int = DEFAULT_NODE_MASK, workers: int = 1):
        super().__init__(ctx, workers)
        self.allocator = CidrAllocator(cluster_cidr, mask)
        self.assigned: dict[str, str] = {}           # node name -> the subnet we count as its
        self._learned = False
        self.nodes = ctx.informers.informer(NODES)
        self.nodes.add_handlers(self._node_changed, lambda old, new: self._node_changed(new),
                                self.enqueue)

    def _node_changed(self, node: dict) -> None:
        cidr = node_cidr(node)
        if cidr is None or cidr != self.assigned.get(node["metadata"]["name"]):
            self.enqueue(node)

    async def reconcile(self, key: str) -> None:
        self._learn_existing()
        node = self.nodes.store.get(key)
        if node is None:
            self._release(key)
            return
        have = node_cidr(node)
        if have:
            self._record(key, have)
            return
        cidr = self.assigned.get(key) or self.allocator.allocate()
        if cidr is None:
            raise TemporaryError(f"node {key}: no pod CIDR left in {self.allocator.network}",
                                 EXHAUSTED_RETRY)
        self.assigned[key] = cidr
        await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        log.info("node %s: podCIDR %s", key, cidr)

    def _learn_existing(self) -> None:
        """Once, before the first allocation: occupy every podCIDR the cached Nodes hold."""
        if self._learned:
            return
        for node in self.nodes.store.list():
            if node_cidr(node):
                self._record(node["metadata"]["name"], node_cidr(node))
        self._learned = True

    def _record(self, name: str, cidr: str) -> None:
        previous = self.assigned.get(name)
        if previous == cidr:
            return
        if previous is not None:
            self.allocator.release(previous)
        self.assigned[name] = cidr
        if not self.allocator.occupy(cidr):
            log.info("node %s: podCIDR %s is outside %s; kept as is", name, cidr, self.allocator.network)

    def _release(self, name: str) -> None:
        cidr = self.assigned.pop(name, None)
        if cidr is not None and cidr not in self.assigned.values():
            self.allocator.release(cidr)


def new_controller(ctx: ControllerContext) -> NodeIpamController:
    return NodeIpamController(ctx, ctx.options.get("cluster_cidr", DEFAULT_CLUSTER_CIDR),
                              int(ctx.options.get("node_cidr_mask_size", DEFAULT_NODE_MASK)))
