"""The proxy's process loop: informers on Services and EndpointSlices feed a work queue of
Service keys; each round takes every queued key and applies them in one transaction.

Handlers only enqueue. The first round, once both informers have listed, rebuilds the whole
table; later rounds are incremental. A key whose transaction failed is retried with the
queue's back-off. Every `check_period` seconds the table's existence is checked (a cheap
listing of table names) and the table rebuilt if someone deleted it; else stale @hairpin
pairs are pruned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from pkube.client.clock import Clock
from pkube.client.informer import Informer
from pkube.client.resources import ENDPOINTSLICES, SERVICES
from pkube.client.workqueue import WorkQueue
from pkube.proxy.backend import Backend, BackendError
from pkube.proxy.conntrack import Conntrack
from pkube.proxy.dnsnames import ClusterNames
from pkube.proxy.dnsserver import DnsServer
from pkube.proxy.metrics import ProxyMetrics
from pkube.proxy.model import service_key, slice_service_key
from pkube.proxy.nft import Nft
from pkube.proxy.proxier import Proxier, SyncResult
from pkube.proxy.rules import ProxyConfig

log = logging.getLogger(__name__)

BY_SERVICE = "service"
CHECK_TABLE = ""           # a queue key no Service has: time to check the table


def index_by_service(slice_: dict) -> list[str]:
    key = slice_service_key(slice_)
    return [key] if key else []


def set_route_localnet() -> None:
    """NodePorts on 127.0.0.1: DNATed packets from 127.0.0.1 may leave through other
    interfaces (as kube-proxy's iptables mode; the table drops such packets coming in from
    outside). A failure is logged: only localhost NodePorts suffer."""
    try:
        with open("/proc/sys/net/ipv4/conf/all/route_localnet", "w") as f:
            f.write("1")
    except OSError as e:
        log.warning("cannot set net.ipv4.conf.all.route_localnet (NodePorts on 127.0.0.1 will not answer): %s", e)


@dataclass(frozen=True)
class DnsConfig:
    """The cluster DNS the proxy serves: on `address` (made local on a dummy interface by
    the caller), for `domain`, forwarding other names to `upstreams`."""

    address: str
    domain: str = "cluster.local"
    upstreams: tuple[tuple[str, int], ...] = ()
    port: int = 53


class ProxyServer:
    """One node's Service proxy over an AsyncApiClient; with `dns`, also the node's cluster
    DNS server, answering from the same informers (its own Service address gets no rules:
    the server answers it locally). Each sync of the table is timed in ``metrics``.
    `backend(config, services, slices, service_keys, conntrack)` makes the rules' backend
    (modes.make_backend); default: nftables through `nft`."""

    def __init__(self, client, config: ProxyConfig, nft: Optional[Nft] = None, clock: Optional[Clock] = None,
                 check_period: float = 30.0, dns: Optional[DnsConfig] = None, metrics: Optional[ProxyMetrics] = None,
                 backend: Optional[Callable[..., Backend]] = None):
        self.clock = clock or Clock()
        self.metrics = metrics
        self.service_informer = Informer(client, SERVICES, clock=self.clock)
        self.slice_informer = Informer(client, ENDPOINTSLICES, clock=self.clock,
                                       indexers={BY_SERVICE: index_by_service})
        self.queue = WorkQueue(clock=self.clock)
        self.check_period = check_period
        slices_of = lambda key: self.slice_informer.store.by_index(BY_SERVICE, key)  # noqa: E731
        self.dns: Optional[DnsServer] = None
        if dns is not None:
            names = ClusterNames(dns.domain, self.service_informer.store.get, slices_of)
            self.dns = DnsServer(names, dns.address, dns.port, dns.upstreams)
        if backend is None:
            backend = lambda cfg, *reads: Proxier(cfg, nft or Nft(), *reads)  # noqa: E731
        self.proxier: Backend = backend(config, self._routed_service, slices_of,
                                        self.service_informer.store.keys, Conntrack())
        self.service_informer.add_handlers(self._on_service, lambda _old, new: self._on_service(new),
                                           self._on_service)
        self.slice_informer.add_handlers(self._on_slice, self._on_slice_update, self._on_slice)

    def _routed_service(self, key: str) -> Optional[dict]:
        """The Service the table routes for `key`: None for the one on the DNS address."""
        service = self.service_informer.store.get(key)
        if service is not None and self.dns is not None and \
                (service.get("spec") or {}).get("clusterIP") == self.dns.address:
            return None
        return service

    def _on_service(self, service: dict) -> None:
        self.queue.add(service_key(service))
        if self.dns is not None:
            self.dns.invalidate()

    def _on_slice(self, slice_: dict) -> None:
        key = slice_service_key(slice_)
        if key:
            self.queue.add(key)
        if self.dns is not None:
            self.dns.invalidate()

    def _on_slice_update(self, old: dict, new: dict) -> None:
        for key in {slice_service_key(old), slice_service_key(new)} - {None}:
            self.queue.add(key)
        if self.dns is not None:
            self.dns.invalidate()

    async def run(self) -> None:
        """Run until cancelled."""
        set_route_localnet()
        tasks = [asyncio.ensure_future(i.run()) for i in (self.service_informer, self.slice_informer)]
        try:
            await self.service_informer.wait_synced()
            await self.slice_informer.wait_synced()
            await self._start_dns()
            await self.rebuild()
            tasks.append(asyncio.ensure_future(self._tick()))
            await self.run_rounds()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.dns is not None:
                await self.dns.stop()

    async def _start_dns(self) -> None:
        """Serve the cluster DNS; when its address cannot be bound (another proxy has it),
        the Services are still routed and the error is logged."""
        if self.dns is None:
            return
        try:
            await self.dns.start()
        except OSError as e:
            log.error("cannot serve the cluster DNS on %s:%d: %s", self.dns.address, self.dns.port, e)
            self.dns = None

    async def rebuild(self) -> None:
        """Write the whole table, covering every Service queued so far; retried every second
        until nft accepts the bare table."""
        while True:
            self._drain()                    # everything queued so far is in the rebuild
            try:
                self._handle(list(), await self._timed(self.proxier.sync_all))
                return
            except BackendError as e:
                log.error("cannot write the rules (%s): %s; retrying", self.proxier.describe(), e)
                await self.clock.sleep(1.0)

    def _drain(self) -> list[str]:
        keys = []
        while (key := self.queue.get_nowait()) is not None:
            keys.append(key)
        for key in keys:
            self.queue.done(key)
        return keys

    async def _tick(self) -> None:
        """Queue CHECK_TABLE every `check_period` seconds, so checks take turns with syncs."""
        while True:
            await self.clock.sleep(self.check_period)
            self.queue.add(CHECK_TABLE)

    async def run_rounds(self) -> None:
        """Rounds until the queue shuts down: every queued Service in one sync; a queued
        CHECK_TABLE runs check_table() after that round's sync."""
        while (first := await self.queue.get()) is not None:
            keys = [first]
            while (key := self.queue.get_nowait()) is not None:
                keys.append(key)
            services = [k for k in keys if k != CHECK_TABLE]
            result = await self._timed(self.proxier.sync, services) if services else SyncResult()
            self._handle(services, result)
            if CHECK_TABLE in keys:
                self.queue.done(CHECK_TABLE)
                await self.check_table()

    async def _timed(self, sync, *args) -> SyncResult:
        """``sync(*args)`` in a thread; its time in the metrics when it did not raise."""
        started = time.perf_counter()
        result = await asyncio.to_thread(sync, *args)
        if self.metrics is not None:
            self.metrics.synced(time.perf_counter() - started)
        return result

    def _handle(self, keys: list[str], result: SyncResult) -> None:
        for key in keys:
            self.queue.done(key)
            if key in result.failed:
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
        for key in result.failed:
            if key not in keys:
                self.queue.add_rate_limited(key)
        for key in result.unblocked:
            self.queue.add(key)

    async def check_table(self) -> None:
        """Write the rules again when they are gone; else prune stale @hairpin entries. Errors are logged."""
        try:
            exists = await asyncio.to_thread(self.proxier.in_place)
        except BackendError as e:
            log.warning("cannot read the rules (%s): %s", self.proxier.describe(), e)
            return
        if not exists:
            log.warning("%s is gone; writing it again", self.proxier.describe())
            await self.rebuild()
            return
        try:
            await asyncio.to_thread(self.proxier.prune)
        except BackendError as e:
            log.warning("cannot prune @hairpin: %s", e)
