"""The pod network controller: this node's routes to every other node's podCIDR.

Runs inside the proxy process. A Node informer's handlers only enqueue one key; each round
(`reconcile`) reads every Node from the cache, plans (pkube/proxy/podroutes.py) against what the
kernel has (pkube/proxy/routing.py: the routes of protocol 0x70, the entries on the vxlan device)
and applies the difference. So routes follow nodes as they join, change and leave, and a
restarted controller (SIGKILL included) removes what it installed before and no longer
wants. Every `resync_period` seconds a round runs anyway, repairing routes deleted behind
its back.

A peer whose route or entries cannot be installed is reported once (a log line and a
Warning Event on that Node, reason FailedToCreateRoute) and retried with back-off; the
other peers' routes are installed regardless.

In vxlan mode the controller first makes the device (VNI, UDP port, local address = this
node's InternalIP) and publishes its MAC on its own Node (podroutes.BACKEND_DATA), which is
what the other nodes' controllers need to reach it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Optional

from pkube.client.clock import Clock
from pkube.client.errors import ApiError
from pkube.client.events import EventRecorder
from pkube.client.informer import Informer
from pkube.client.resources import NODES
from pkube.client.workqueue import WorkQueue
from pkube.proxy import podroutes
from pkube.proxy.podroutes import HOST_GW, VXLAN
from pkube.proxy.routing import Routing, VxlanLink
from pkube.runtime.netlink import NetlinkError, write_sysctl

log = logging.getLogger(__name__)

SYNC = "sync"
FAILED_REASON = "FailedToCreateRoute"


@dataclass(frozen=True)
class PodNetworkConfig:
    """`mode` is podroutes.HOST_GW or VXLAN; `node_ip` overrides this node's InternalIP (the
    tunnel's local end); `mtu` is the vxlan device's: the nodes' own MTU less the 50 bytes of
    VXLAN's headers, so tunnelled packets are not fragmented (pods learn it by path MTU
    discovery from the node's ICMP "fragmentation needed")."""

    mode: str
    node_name: str
    node_ip: Optional[str] = None
    device: str = "pkube-vxlan"
    vni: int = 1
    port: int = 8472
    mtu: int = 1450


class PodNetwork:
    """One node's routes to the other nodes' pods, over an AsyncApiClient and a Routing."""

    def __init__(self, client, config: PodNetworkConfig, routing: Routing, clock: Optional[Clock] = None,
                 recorder: Optional[EventRecorder] = None, resync_period: float = 30.0):
        if config.mode not in (HOST_GW, VXLAN):
            raise ValueError(f"pod network mode {config.mode!r}: want {HOST_GW} or {VXLAN}")
        self.client, self.config, self.routing = client, config, routing
        self.clock = clock or Clock()
        self.recorder = recorder or EventRecorder(client, "pkube-proxy", host=config.node_name, clock=self.clock)
        self.informer = Informer(client, NODES, clock=self.clock)
        self.queue = WorkQueue(clock=self.clock)
        self.resync_period = resync_period
        self.reported: dict[str, str] = {}       # node -> the problem last reported
        self.informer.add_handlers(self._changed, self._updated, self._changed)

    def _changed(self, *_nodes) -> None:
        self.queue.add(SYNC)

    def _updated(self, old: dict, new: dict) -> None:
        """Heartbeats change nothing we route by; so does a resync (old is new): a round
        then repairs what was changed behind our back."""
        if old is new or podroutes.routing_view(old) != podroutes.routing_view(new):
            self.queue.add(SYNC)

    async def run(self) -> None:
        """Run until cancelled."""
        tasks = [asyncio.ensure_future(self.informer.run()), asyncio.ensure_future(self.recorder.run())]
        try:
            await asyncio.to_thread(write_sysctl, "net.ipv4.ip_forward", "1")
            await self.informer.wait_synced()
            self.queue.add(SYNC)
            tasks.append(asyncio.ensure_future(self._tick()))
            while (key := await self.queue.get()) is not None:
                try:
                    retry = await self.reconcile()
                except (NetlinkError, OSError) as e:
                    log.error("pod network: %s; retrying", e)
                    retry = True
                self.queue.done(key)
                if retry:
                    self.queue.add_rate_limited(key)
                else:
                    self.queue.forget(key)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            await self.clock.sleep(self.resync_period)
            self.queue.add(SYNC)

    async def reconcile(self) -> bool:
        """One round; True when something failed and the round should be retried."""
        nodes = self.informer.store.list()
        own = self.informer.store.get(self.config.node_name)
        link = None
        if self.config.mode == VXLAN:
            link = await self._ensure_vxlan(own)
            if link is None:
                return False                    # no address yet: a Node update brings it
        else:
            await asyncio.to_thread(self.routing.delete_link, self.config.device)   # a vxlan left over
        found, problems, waiting = podroutes.peers(nodes, self.config.node_name, self.config.mode)
        routes = podroutes.wanted_routes(found, self.config.mode, link.index if link else None)
        entries = podroutes.wanted_neighbours(found, self.config.mode)
        failures = await asyncio.to_thread(apply, self.routing, routes, entries, link)
        self._report({**problems, **failures}, waiting, {n["metadata"]["name"]: n for n in nodes})
        return bool(failures)

    def _report(self, problems: dict[str, str], waiting: dict[str, str], nodes: dict[str, dict]) -> None:
        """Log (and, for real problems, record an Event about) each peer's problem once; log
        when a peer reported before is routed again."""
        for name in list(self.reported):
            if name not in problems and name not in waiting:
                if name in nodes:
                    log.info("pod network: node %s is routed now", name)
                del self.reported[name]
        for name, why in waiting.items():
            if self.reported.get(name) != why:
                log.info("pod network: %s", why)
                self.reported[name] = why
        for name, why in problems.items():
            if self.reported.get(name) != why:
                log.error("pod network: no route to node %s's pods: %s", name, why)
                if name in nodes:
                    self.recorder.emit(nodes[name], "Warning", FAILED_REASON, f"{self.config.node_name}: {why}")
                self.reported[name] = why

    async def _ensure_vxlan(self, own: Optional[dict]) -> Optional[VxlanLink]:
        """The vxlan device, made (or made again, if its settings differ) with this node's
        address, its VTEP address set and its MAC published; None while the address is unknown."""
        local = self._local_ip(own)
        if local is None:
            if self.reported.get(self.config.node_name) != "no address":
                log.error("pod network: node %s has no InternalIP and --node-ip is not given: "
                          "no vxlan device yet", self.config.node_name)
                self.reported[self.config.node_name] = "no address"
            return None
        link = await asyncio.to_thread(ensure_vxlan, self.routing, self.config, local,
                                      podroutes.pod_cidr(own or {}))
        await self._publish(own, link, local)
        return link

    def _local_ip(self, own: Optional[dict]) -> Optional[ipaddress.IPv4Address]:
        if self.config.node_ip:
            return ipaddress.IPv4Address(self.config.node_ip)
        return podroutes.internal_ip(own) if own else None

    async def _publish(self, own: Optional[dict], link: VxlanLink, local: ipaddress.IPv4Address) -> None:
        """Put the device's MAC on this node's Node unless it is there already."""
        if own is None:
            return
        wanted = podroutes.backend_annotations(link.mac, self.config.vni, local)
        current = (own.get("metadata") or {}).get("annotations") or {}
        if all(current.get(k) == v for k, v in wanted.items()):
            return
        try:
            await self.client.patch(NODES, self.config.node_name, {"metadata": {"annotations": wanted}})
        except ApiError as e:
            log.error("pod network: cannot publish the VTEP MAC on node %s: %s", self.config.node_name, e)


def apply(routing: Routing, routes: dict, entries: dict, link: Optional[VxlanLink]) -> dict[str, str]:
    """Make the kernel hold exactly `routes` and (on `link`, the vxlan device) `entries`, both
    podroutes' {wanted: node name}; {node: why} for the nodes whose route or entries failed
    (their route is then not written). Blocking: call from a thread."""
    installed = routing.routes()
    neighbours = routing.neighbours(link.index) if link else []
    todo = podroutes.plan(routes, installed, entries, neighbours)
    if todo != podroutes.Plan():
        log.info("pod network: routes %s, deleting %s; %d neighbour entries to write, %d to delete",
                 ", ".join(map(str, todo.add_routes)) or "in place",
                 ", ".join(map(str, todo.delete_routes)) or "none",
                 len(todo.add_neighbours), len(todo.delete_neighbours))
    failures: dict[str, str] = {}
    for entry in todo.delete_neighbours:
        _try(lambda e=entry: routing.delete_neighbour(link.index, e), None, failures)
    for route in todo.delete_routes:
        _try(lambda r=route: routing.delete_route(r), None, failures)
    for entry in todo.add_neighbours:
        _try(lambda e=entry: routing.replace_neighbour(link.index, e), entries[entry], failures)
    for route in todo.add_routes:
        if routes[route] not in failures:
            _try(lambda r=route: routing.replace_route(r), routes[route], failures)
    return failures


def _try(action, node: Optional[str], failures: dict[str, str]) -> None:
    """Run `action`; a failure is logged (node None: a deletion) or recorded against `node`."""
    try:
        action()
    except NetlinkError as e:
        if node is None:
            log.warning("pod network: %s", e)
        else:
            failures.setdefault(node, str(e))


def ensure_vxlan(routing: Routing, config: PodNetworkConfig, local: ipaddress.IPv4Address,
                 cidr: Optional[ipaddress.IPv4Network]) -> VxlanLink:
    """The vxlan device of `config`, made (or made again when its VNI, port, local address or
    MTU differ) with local address `local`, and given its VTEP address (the network address of
    this node's `cidr`, when known). Blocking."""
    found = routing.link(config.device)
    link = found[1] if found else None
    if link is None or (link.vni, link.port, link.local, link.mtu) != (config.vni, config.port, local, config.mtu):
        if found is not None:
            log.info("pod network: %s has other settings; making it again", config.device)
            routing.delete_link(config.device)
        link = routing.create_vxlan(config.device, config.vni, config.port, local, podroutes.vxlan_mac(local),
                                    config.mtu)
        log.info("pod network: made %s (VNI %d, udp/%d, local %s, MAC %s, MTU %d)", config.device, config.vni,
                 config.port, local, link.mac, config.mtu)
    if cidr is not None:
        routing.add_address(config.device, ipaddress.IPv4Interface(f"{cidr.network_address}/32"))
    return link


def remove_pod_network(device: str = "pkube-vxlan", netns: Optional[str] = None) -> int:
    """Delete every route we own (protocol 0x70) and the vxlan device (`proxy --cleanup`,
    `pkube down`); the number of routes deleted."""
    routing = Routing(netns)
    try:
        routes = routing.routes()
        for route in routes:
            routing.delete_route(route)
        routing.delete_link(device)
        return len(routes)
    finally:
        routing.close()
