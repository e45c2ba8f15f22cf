"""metrics.k8s.io/v1beta1, as metrics-server serves it: NodeMetrics and PodMetrics read from
the kubelets' /stats/summary, so that `kubectl top node|pod` work.

Each request asks the kubelets it needs (all Ready nodes for a list, one for a get), at most
once per `cache_seconds` each; a kubelet that cannot be reached leaves its node and pods out,
as metrics-server does. CPU is the rate the kubelet reports (usageNanoCores); a kubelet that
has no rate yet (it needs two samples) is asked once more a moment later.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

import httpx
from starlette.requests import Request
from starlette.responses import Response

from pkube.api.kinds import Registry
from pkube.api.selectors import SelectorError, parse_label_selector
from pkube.apiserver import errors
from pkube.apiserver.encoding import json_response
from pkube.apiserver.kubelet_proxy import KubeletConnection
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP}"
WINDOW = "10s"
SECOND_SAMPLE_DELAY = 0.5


def group_document() -> dict:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def resource_list() -> dict:
    def resource(name, kind, namespaced):
        return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [resource("nodes", "NodeMetrics", False), resource("pods", "PodMetrics", True)]}


def is_metrics_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def cpu_quantity(nanocores: Optional[int]) -> str:
    return f"{int(nanocores or 0)}n"


def memory_quantity(value: Optional[int]) -> str:
    return f"{int(value or 0) // 1024}Ki"


def usage(block: dict) -> dict:
    return {"cpu": cpu_quantity((block.get("cpu") or {}).get("usageNanoCores")),
            "memory": memory_quantity((block.get("memory") or {}).get("workingSetBytes"))}


def node_metrics(name: str, summary: dict) -> dict:
    node = summary.get("node") or {}
    stamp = (node.get("cpu") or {}).get("time") or _now()
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": name, "creationTimestamp": _now()},
            "timestamp": stamp, "window": WINDOW, "usage": usage(node)}


def pod_metrics(pod: dict, stats: dict) -> dict:
    meta = pod["metadata"]
    containers = [{"name": c.get("name"), "usage": usage(c)} for c in stats.get("containers") or []]
    stamp = (stats.get("cpu") or {}).get("time") or _now()
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "labels": meta.get("labels") or {}, "creationTimestamp": _now()},
            "timestamp": stamp, "window": WINDOW, "containers": containers}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _has_rate(summary: dict) -> bool:
    return "usageNanoCores" in ((summary.get("node") or {}).get("cpu") or {})


class MetricsAPI:
    """Serves every path under /apis/metrics.k8s.io."""

    def __init__(self, store: ResourceStore, storage, registry: Registry, connection: KubeletConnection,
                 cache_seconds: float = 5.0):
        self.store, self.storage = store, storage
        self.connection, self.cache_seconds = connection, cache_seconds
        self.nodes = registry.by_kind("Node", "")
        self.pods = registry.by_kind("Pod", "")
        self._cache: dict[str, tuple[float, dict]] = {}

    async def handle(self, request: Request) -> Response:
        parts = request.url.path[len(PREFIX):].strip("/").split("/") if request.url.path != PREFIX else []
        if request.method != "GET":
            raise errors.ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {GROUP}")
        if not parts or parts == [""]:
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **group_document()})
        if parts[0] != VERSION:
            raise errors.resource_not_found(request.url.path)
        rest = parts[1:]
        if not rest:
            return json_response(resource_list())
        if rest[0] == "nodes" and len(rest) <= 2:
            return json_response(await self._nodes(rest[1] if len(rest) == 2 else None, request))
        if rest[0] == "pods" and len(rest) == 1:
            return json_response(await self._pods(None, None, request))
        if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == "pods":
            return json_response(await self._pods(rest[1], rest[3] if len(rest) == 4 else None, request))
        raise errors.resource_not_found(request.url.path)

    async def _nodes(self, name: Optional[str], request: Request) -> dict:
        nodes = [await self.store.get(Target(self.nodes, None, name))] if name else await self._ready_nodes()
        summaries = await self._summaries(nodes)
        if name:
            if name not in summaries:
                raise errors.ApiError(404, "NotFound", f'nodemetrics.metrics.k8s.io "{name}" not found')
            return node_metrics(name, summaries[name])
        selector = _selector(request)
        items = [node_metrics(n["metadata"]["name"], summaries[n["metadata"]["name"]]) for n in nodes
                 if n["metadata"]["name"] in summaries and selector(n["metadata"].get("labels") or {})]
        return {"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}

    async def _pods(self, namespace: Optional[str], name: Optional[str], request: Request) -> dict:
        if name:
            pods = [await self.store.get(Target(self.pods, namespace, name))]
        else:
            selector = _selector(request)
            pods = [p for p in await self._list(self.pods, namespace) if selector(p["metadata"].get("labels") or {})]
        node_names = {(p.get("spec") or {}).get("nodeName") for p in pods} - {None}
        nodes = [n for n in await self._ready_nodes() if n["metadata"]["name"] in node_names]
        stats = {}
        for summary in (await self._summaries(nodes)).values():
            for entry in summary.get("pods") or []:
                ref = entry.get("podRef") or {}
                stats[ref.get("uid")] = entry
        items = [pod_metrics(p, stats[p["metadata"]["uid"]]) for p in pods if p["metadata"].get("uid") in stats]
        if name:
            if not items:
                raise errors.ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found')
            return items[0]
        return {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}

    async def _list(self, info, namespace: Optional[str]) -> list[dict]:
        return (await self.storage.list(info.key_prefix(namespace))).items

    async def _ready_nodes(self) -> list[dict]:
        return [n for n in await self._list(self.nodes, None)
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (n.get("status") or {}).get("conditions") or [])]

    async def _summaries(self, nodes: list[dict]) -> dict[str, dict]:
        """node name -> its kubelet's summary, for the nodes that answered."""
        async with httpx.AsyncClient(timeout=5.0, **self.connection.client_options) as client:
            answers = await asyncio.gather(*(self._summary(client, n) for n in nodes))
        return {n["metadata"]["name"]: s for n, s in zip(nodes, answers) if s is not None}

    async def _summary(self, client: httpx.AsyncClient, node: dict) -> Optional[dict]:
        name = node["metadata"]["name"]
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            url = f"{self.connection.base_url(node)}/stats/summary"
            summary = (await client.get(url)).json()
            if not _has_rate(summary):
                await asyncio.sleep(SECOND_SAMPLE_DELAY)
                summary = (await client.get(url)).json()
        except (httpx.HTTPError, ValueError, errors.ApiError):
            return None
        self._cache[name] = (time.monotonic(), summary)
        return summary


def _selector(request: Request):
    text = request.query_params.get("labelSelector")
    if not text:
        return lambda labels: True
    try:
        selector = parse_label_selector(text)
    except SelectorError as err:
        raise errors.bad_request(f"invalid labelSelector: {err}") from None
    return selector.matches
