"""Node IPAM: subnet allocation, re-learning after a restart, release on delete."""

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.client.fake import FakeApi
from pkube.client.resources import NODES
from pkube.controllers.base import ControllerContext, TemporaryError
from pkube.controllers.nodeipam import CidrAllocator, NodeIpamController


def test_allocator_hands_out_distinct_subnets_and_reuses_released_ones():
    allocator = CidrAllocator("10.244.0.0/22", 24)
    got = [allocator.allocate() for _ in range(4)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert allocator.allocate() is None
    allocator.release("10.244.2.0/24")
    assert allocator.allocate() == "10.244.2.0/24"
    assert not allocator.occupy("192.168.0.0/24") and not allocator.occupy("10.244.0.0/25")
    with pytest.raises(ValueError):
        CidrAllocator("10.244.0.0/16", 8)


def test_allocator_skips_occupied_subnets():
    allocator = CidrAllocator("10.0.0.0/16", 26)
    assert allocator.occupy("10.0.0.0/26") and allocator.occupy("10.0.0.64/26")
    assert allocator.allocate() == "10.0.0.128/26"
    assert allocator.free == 2 ** 10 - 3


def node(name, cidr=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr} if cidr else {}}


def controller_over(api, *nodes, cidr="10.244.0.0/16"):
    controller = NodeIpamController(ControllerContext.create(api, FakeClock()), cidr)
    for n in nodes:
        controller.nodes.store.put(n)
    return controller


def test_restart_relearns_existing_cidrs_before_allocating():
    async def scenario():
        api = FakeApi()
        for n in (node("new"), node("old", "10.244.0.0/24")):
            await api.create(NODES, n)
        controller = controller_over(api, node("new"), node("old", "10.244.0.0/24"))
        await controller.reconcile("new")                     # "new" is visited first
        assert (await api.get(NODES, "new"))["spec"] == {"podCIDR": "10.244.1.0/24",
                                                         "podCIDRs": ["10.244.1.0/24"]}
        await controller.reconcile("old")
        assert [w[0] for w in api.writes].count("patch") == 1
    asyncio.run(scenario())


def test_deleted_node_releases_its_cidr_and_exhaustion_is_retried_later():
    async def scenario():
        api = FakeApi()
        for name in ("a", "b"):
            await api.create(NODES, node(name))
        controller = controller_over(api, node("a"), node("b"), cidr="10.244.0.0/24")
        await controller.reconcile("a")
        assert (await api.get(NODES, "a"))["spec"]["podCIDR"] == "10.244.0.0/24"
        with pytest.raises(TemporaryError, match="no pod CIDR left"):
            await controller.reconcile("b")
        controller.nodes.store.remove("a")
        await controller.reconcile("a")
        await controller.reconcile("b")
        assert (await api.get(NODES, "b"))["spec"]["podCIDR"] == "10.244.0.0/24"
    asyncio.run(scenario())
