"""Prometheus metrics shared by every component (docs/metrics.md): the registry each process
makes, the workqueue's metrics (client-go's names), the text exposition, and the small
loopback HTTP listener the scheduler, controller-manager and proxy serve ``/metrics`` on.

No global registry: each component makes its own with ``new_registry()`` (the process's CPU,
memory and open files included) and passes it to what it instruments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from typing import Callable, Hashable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

# client-go's workqueue buckets: 10 ns to 10 s, a factor of 10 apart
WORKQUEUE_BUCKETS = tuple(1e-8 * 10 ** i for i in range(10))
MAX_REQUEST_HEAD = 8192
READ_TIMEOUT = 10.0


def new_registry() -> CollectorRegistry:
    """A component's registry, with process_* (CPU seconds, resident memory, open fds...),
    python_gc_* and python_info already in it. Counters and histograms made from here on get
    no ``*_created`` series (Kubernetes' components have none; prometheus_client's switch
    for it is process-wide)."""
    disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) of the registry's metrics, in the format ``accept`` asks for
    (Prometheus text by default, OpenMetrics when asked)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class QueueMetrics:
    """The metrics of one named workqueue; the queue calls ``added`` when a key becomes
    dirty, ``started`` when it hands a key out, ``finished`` at ``done`` and ``retried``
    for a rate-limited re-add. Called from the event loop's thread only."""

    def __init__(self, provider: "WorkqueueMetrics", name: str):
        self._adds = provider.adds.labels(name)
        self._retries = provider.retries.labels(name)
        self._queue_duration = provider.queue_duration.labels(name)
        self._work_duration = provider.work_duration.labels(name)
        self._depth = provider.depth.labels(name)
        self._added_at: dict = {}
        self._started_at: dict = {}

    def measure_depth(self, depth: Callable[[], float]) -> None:
        """Read the queue's depth from ``depth()`` at each scrape."""
        self._depth.set_function(depth)

    def added(self, key: Hashable) -> None:
        self._adds.inc()
        self._added_at.setdefault(key, time.perf_counter())

    def started(self, key: Hashable) -> None:
        now = time.perf_counter()
        added = self._added_at.pop(key, None)
        if added is not None:
            self._queue_duration.observe(now - added)
        self._started_at[key] = now

    def finished(self, key: Hashable) -> None:
        started = self._started_at.pop(key, None)
        if started is not None:
            self._work_duration.observe(time.perf_counter() - started)

    def retried(self) -> None:
        self._retries.inc()


class NoQueueMetrics:
    """What a queue without metrics calls: nothing."""

    def measure_depth(self, depth: Callable[[], float]) -> None:
        return None

    def added(self, key: Hashable) -> None:
        return None

    def started(self, key: Hashable) -> None:
        return None

    def finished(self, key: Hashable) -> None:
        return None

    def retried(self) -> None:
        return None


class WorkqueueMetrics:
    """client-go's workqueue metric families in ``registry``; ``for_queue(name)`` gives the
    metrics of one queue (``name`` is its label: the controller's name)."""

    def __init__(self, registry: CollectorRegistry):
        self.depth = Gauge("workqueue_depth", "Current depth of the workqueue", ["name"], registry=registry)
        self.adds = Counter("workqueue_adds", "Total number of adds handled by the workqueue",
                            ["name"], registry=registry)
        self.retries = Counter("workqueue_retries", "Total number of retries handled by the workqueue",
                               ["name"], registry=registry)
        self.queue_duration = Histogram("workqueue_queue_duration_seconds",
                                        "How long in seconds an item stays in the workqueue before being requested",
                                        ["name"], buckets=WORKQUEUE_BUCKETS, registry=registry)
        self.work_duration = Histogram("workqueue_work_duration_seconds",
                                       "How long in seconds processing an item from the workqueue takes",
                                       ["name"], buckets=WORKQUEUE_BUCKETS, registry=registry)

    def for_queue(self, name: str) -> QueueMetrics:
        return QueueMetrics(self, name)


# -- the loopback listener -------------------------------------------------------------

def add_metrics_flag(parser: argparse.ArgumentParser, default_port: int) -> None:
    """``--metrics-bind-address HOST:PORT`` (default 127.0.0.1:``default_port``; port 0 or an
    empty value: no listener)."""
    parser.add_argument("--metrics-bind-address", default=f"127.0.0.1:{default_port}",
                        help=f"serve /metrics over plain HTTP here (default 127.0.0.1:{default_port}; "
                             "port 0: not served)")


def parse_bind_address(text: str) -> Optional[tuple[str, int]]:
    """(host, port) of HOST:PORT; None when disabled (empty, or port 0). ValueError when malformed."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-bind-address {text!r}: want HOST:PORT")
    if int(port) == 0:
        return None
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """Plain HTTP on one address: ``GET /metrics`` (the registry), ``GET /healthz`` ("ok");
    anything else 404. One request per connection. ``start`` binds (OSError when it
    cannot); ``stop`` closes the listener."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        self.registry, self.host, self.port = registry, host, port
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, content_type, body = self._answer(head)
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status, b"OK" if status == 200 else b"Not Found", content_type.encode(), len(body)))
            writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        lines = head[:MAX_REQUEST_HEAD].decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.split(" ")[0].split("?")[0]
        if method == "GET" and path == "/metrics":
            accept = next((line.split(":", 1)[1].strip() for line in lines[1:]
                           if line.lower().startswith("accept:")), "")
            body, content_type = exposition(self.registry, accept)
            return 200, content_type, body
        if method == "GET" and path == "/healthz":
            return 200, "text/plain", b"ok"
        return 404, "text/plain", b"404 page not found\n"


async def start_metrics_server(registry: CollectorRegistry, address: str, who: str) -> Optional[MetricsServer]:
    """The listener ``--metrics-bind-address`` asks for, started; None when disabled or when
    the address cannot be bound (logged: metrics are not worth failing the component for)."""
    bind = parse_bind_address(address)
    if bind is None:
        return None
    server = MetricsServer(registry, *bind)
    try:
        await server.start()
    except OSError as err:
        log.warning("%s: cannot serve /metrics on %s: %s", who, address, err)
        return None
    log.info("%s: serving /metrics on http://%s:%d/metrics", who, server.host, server.port)
    return server
