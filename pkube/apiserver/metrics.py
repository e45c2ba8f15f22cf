"""kube-apiserver's metrics (docs/metrics.md), served on the non-resource URL ``/metrics``.

``ApiserverMetrics(registry)`` holds them. The request filters call ``observe`` once per
finished short request and ``stream_started`` when a long-running one (watch, exec, logs...)
begins; the storage wrapper (apiserver.storage.measured) times each store call; in-flight
counts are read from the in-flight limiter and object counts from etcd when scraped.

The hot path stays cheap: each distinct label set is resolved once, then a request costs a
tuple, one dict lookup, a counter increment and a histogram observation.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from pkube.apiserver.requestinfo import RequestInfo
from pkube.client.metrics import exposition

# kube-apiserver's request and etcd latency buckets, seconds
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                   30, 45, 60)
COMPONENT = "apiserver"
REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
LONG_RUNNING_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")
STREAM_VERBS = frozenset(("attach", "exec", "portforward", "proxy"))
OBJECT_COUNT_INTERVAL = 5.0     # etcd is asked for the object counts at most this often
MAX_LABEL_SETS = 5000           # past this many, new requests are counted under resource "other"

CountObjects = Callable[[], Awaitable[dict[str, int]]]


def reported_method(request: Request) -> str:
    """The request's method, APPLY for a server-side apply (a PATCH of
    application/apply-patch+yaml), as kube-apiserver reports it."""
    method = request.scope["method"]
    if method == "PATCH" and request.headers.get("content-type", "").startswith("application/apply-patch"):
        return "APPLY"
    return method


def reported_verb(info: RequestInfo, method: str) -> str:
    """The verb label as kube-apiserver reports it: the HTTP method (``reported_method``),
    except LIST for collection reads, WATCH for watches and CONNECT for the streaming
    subresources."""
    if info.verb == "watch":
        return "WATCH"
    if info.resource_request and info.subresource in STREAM_VERBS:
        return "CONNECT"
    if info.verb == "list":
        return "LIST"
    return method if method != "HEAD" else "GET"


def scope(info: RequestInfo) -> str:
    """'resource' (one object), 'namespace' (a namespace's collection), 'cluster'; "" for
    non-resource URLs."""
    if not info.resource_request:
        return ""
    if info.name:
        return "resource"
    return "namespace" if info.namespace else "cluster"


def non_resource_path(path: str) -> str:
    """The subresource label of a non-resource URL: its first segment (/metrics, /openapi,
    /apis, /version...), so that arbitrary paths cannot blow up the label sets."""
    return "/" + path.strip("/").split("/", 1)[0]


class InflightRequests(Collector):
    """apiserver_current_inflight_requests{request_kind}: read from the in-flight limiter
    (apiserver.inflight) when scraped; 0 without one, or for a kind it does not limit."""

    def __init__(self):
        self.limiter = None

    def collect(self):
        counts = getattr(self.limiter, "in_flight", {True: 0, False: 0})
        family = GaugeMetricFamily("apiserver_current_inflight_requests",
                                   "Maximal number of currently used inflight request limit of this apiserver "
                                   "per request kind in last second.", labels=["request_kind"])
        family.add_metric(["readOnly"], counts[True])
        family.add_metric(["mutating"], counts[False])
        yield family


class StorageObjects(Collector):
    """apiserver_storage_objects{resource}: the last counts ``refresh`` read."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def collect(self):
        family = GaugeMetricFamily("apiserver_storage_objects", "Number of stored objects at the time of "
                                   "last check split by kind.", labels=["resource"])
        for resource, count in sorted(self.counts.items()):
            family.add_metric([resource], count)
        yield family


class ApiserverMetrics:
    """The metrics of one apiserver, in ``registry`` (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter("apiserver_request", "Counter of apiserver requests broken out for each verb, "
                                "dry run value, group, version, resource, scope, component, and HTTP response code.",
                                [*REQUEST_LABELS, "code"], registry=registry)
        self.durations = Histogram("apiserver_request_duration_seconds", "Response latency distribution in "
                                   "seconds for each verb, dry run value, group, version, resource, subresource, "
                                   "scope and component.", REQUEST_LABELS, buckets=REQUEST_BUCKETS,
                                   registry=registry)
        self.longrunning = Gauge("apiserver_longrunning_requests", "Gauge of all active long-running apiserver "
                                 "requests broken out by verb, group, version, resource, scope and component. "
                                 "Not all requests are tracked this way.", LONG_RUNNING_LABELS, registry=registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Number of currently registered watchers for "
                              "a given resource", ["group", "version", "resource"], registry=registry)
        self.storage = StorageMetrics(registry)
        self.inflight = InflightRequests()
        self.objects = StorageObjects()
        registry.register(self.inflight)
        registry.register(self.objects)
        self._count_objects: Optional[CountObjects] = None
        self._counted_at = float("-inf")
        self._children: dict[tuple, tuple] = {}

    def measure_limiter(self, limiter) -> None:
        """Report in-flight requests from ``limiter`` (an InflightLimiter, or None)."""
        self.inflight.limiter = limiter

    def count_objects_with(self, count: Optional[CountObjects]) -> None:
        """``count()`` (e.g. EtcdStorage.key_counts) gives {resource: objects} at scrape time."""
        self._count_objects = count

    def observe(self, info: RequestInfo, method: str, dry_run: str, code: int, seconds: float) -> None:
        """One short request answered with ``code`` after ``seconds``."""
        key = (info.verb, method, dry_run, info.api_group, info.api_version, info.resource, info.subresource,
               bool(info.name), bool(info.namespace), info.resource_request, code,
               "" if info.resource_request else non_resource_path(info.path))
        children = self._children.get(key)
        if children is None:
            children = self._resolve(info, method, dry_run, code)
            if len(self._children) < MAX_LABEL_SETS:
                self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

    def stream_started(self, info: RequestInfo, method: str, code: int) -> Callable[[], None]:
        """A long-running request answered ``code``: counted, tracked as running until the
        returned function is called (once) when it ends."""
        labels = self._labels(info, method)
        self.requests.labels(*labels[:1], "", *labels[1:], str(code)).inc()
        running = self.longrunning.labels(*labels)
        watchers = (self.watchers.labels(info.api_group, info.api_version, info.resource)
                    if info.verb == "watch" and code < 300 else None)
        running.inc()
        if watchers is not None:
            watchers.inc()
        done: list = []

        def ended() -> None:
            if not done:
                done.append(True)
                running.dec()
                if watchers is not None:
                    watchers.dec()
        return ended

    async def refresh_objects(self) -> None:
        """Read the object counts again when the last read is older than OBJECT_COUNT_INTERVAL."""
        if self._count_objects is None or time.monotonic() - self._counted_at < OBJECT_COUNT_INTERVAL:
            return
        self._counted_at = time.monotonic()
        self.objects.counts = await self._count_objects()

    async def serve(self, request: Request) -> Response:
        """GET /metrics: the text exposition (OpenMetrics when the Accept header asks)."""
        await self.refresh_objects()
        body, content_type = exposition(self.registry, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    def _labels(self, info: RequestInfo, method: str) -> tuple:
        if info.resource_request:
            return (reported_verb(info, method), info.api_group, info.api_version, info.resource,
                    info.subresource, scope(info), COMPONENT)
        return (method, "", "", "", non_resource_path(info.path), "", COMPONENT)

    def _resolve(self, info: RequestInfo, method: str, dry_run: str, code: int) -> tuple:
        verb, *rest = self._labels(info, method)
        if len(self._children) >= MAX_LABEL_SETS:     # made-up paths must not grow the series for ever
            rest[2:4] = ["other", ""]
        counter = self.requests.labels(verb, dry_run, *rest, str(code))
        timed = verb not in ("WATCH", "CONNECT")
        return counter, self.durations.labels(verb, dry_run, *rest) if timed else None


class StorageMetrics:
    """etcd_request_duration_seconds{operation, type}: each store call, timed
    (``type`` is the resource, the key's segment after /registry/)."""

    def __init__(self, registry: CollectorRegistry):
        self.durations = Histogram("etcd_request_duration_seconds", "Etcd request latency in seconds for each "
                                   "operation and object type.", ["operation", "type"], buckets=REQUEST_BUCKETS,
                                   registry=registry)
        self._children: dict[tuple[str, str], object] = {}

    def observe(self, operation: str, key: str, seconds: float) -> None:
        parts = key.split("/", 3)
        resource = parts[2] if len(parts) > 2 and parts[1] == "registry" else ""
        child = self._children.get((operation, resource))
        if child is None:
            child = self._children[(operation, resource)] = self.durations.labels(operation, resource)
        child.observe(seconds)
