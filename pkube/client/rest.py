"""The REST client: Kubernetes verbs over HTTP(S), with errors translated once.

Two faces over one request builder: ``ApiClient`` here (blocking, ``httpx.Client``:
CLIs, tests, scripts) and ``client.aio.AsyncApiClient`` (watches on ``aiohttp``, other
requests on pkube/client/http1.py: 30x less CPU per request than httpx; the scheduler,
controllers, kubelet and hollow nodes, which run on one asyncio event loop per
process). They live apart so that pkubectl never imports aiohttp and asyncio (~120 ms). Each verb is built once as a ``Request`` by ``Verbs``; the two
classes only send it. Every non-2xx answer raises an ``ApiError`` subclass
(see ``client.errors``); a transport failure raises ``Unavailable``.

``namespace`` arguments: None on a list or watch of a namespaced resource
means all namespaces; on other verbs it means the object's own namespace, else
the kubeconfig context's namespace.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import httpx

from pkube.api.jsonvalue import dumps, loads
from pkube.client.errors import error_for_status, error_from_response, unavailable
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import PODS, resource_path

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
WATCH_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
CONNECT_TIMEOUT = 10.0


@dataclass
class Request:
    """One HTTP call, before it is sent."""

    method: str
    path: str
    params: dict = field(default_factory=dict)
    body: object = None
    content_type: str = "application/json"


def ssl_context(config: ClientConfig) -> ssl.SSLContext | bool:
    """The TLS settings: a context with the CA and client cert, or False (no verification).

    Serves as httpx's ``verify`` and aiohttp's ``ssl``.
    """
    if config.insecure and not config.cert:
        return False
    ctx = ssl.create_default_context(cadata=config.ca) if config.ca else ssl.create_default_context()
    if config.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.cert and config.key:
        _load_client_cert(ctx, config.cert, config.key)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """ssl only loads key pairs from files: write them to a private temp dir, load, delete."""
    with tempfile.TemporaryDirectory(prefix="pkube-cert-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_text(cert_pem)
        key.touch(mode=0o600)
        key.write_text(key_pem)
        ctx.load_cert_chain(cert, key)


def client_options(config: ClientConfig, timeout: float, max_connections: int = 64,
                   max_idle: int = 16) -> dict:
    """Keyword arguments of the blocking client's httpx.Client.

    Each watch holds a connection for its lifetime, so ``max_connections`` must
    exceed the number of concurrent watches plus in-flight requests. Idle
    connections are few on purpose: httpcore's pool bookkeeping costs
    O(idle x all) on every request, yet fewer idle slots than concurrent
    requests means a new TCP connection per request (measured best: 16 idle
    for the scheduler's 8 concurrent bindings).
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_idle)
    return dict(base_url=config.server, headers=default_headers(config), verify=ssl_context(config),
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), limits=limits)


def default_headers(config: ClientConfig) -> dict:
    """Headers of every request: JSON answers, and the bearer token when the config has one."""
    headers = {"Accept": "application/json", "User-Agent": config.user_agent}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    return headers


def parse_watch_line(line: str | bytes) -> Optional[tuple[str, dict]]:
    """One watch stream line as (type, object); None for a blank line.

    An ERROR event raises its Status as an ApiError (``Gone`` for 410).
    """
    line = line.strip()
    if not line:
        return None
    event = loads(line)
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        text = line if isinstance(line, str) else line.decode("utf-8", "replace")
        raise error_for_status(obj if obj.get("kind") == "Status" else {"code": 500, "message": text})
    if kind not in WATCH_EVENT_TYPES:
        raise ValueError(f"watch: unknown event type {kind!r}")
    return kind, obj


def _answer(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise error_from_response(response.status_code, response.content)
    return loads(response.content) if response.content else {}


class Verbs:
    """Builds the Request of each verb; subclasses send them. ``<verb>_request(...)`` returns
    the Request that ``<verb>(...)`` sends (path, parameters, body, content type) without sending it."""

    def __init__(self, config: ClientConfig):
        self.config = config

    def _ns(self, resource, namespace: Optional[str], obj: Optional[dict] = None) -> Optional[str]:
        if not resource.namespaced:
            return None
        meta_ns = (obj or {}).get("metadata", {}).get("namespace")
        return namespace or meta_ns or self.config.namespace

    def get_request(self, resource, name, namespace=None, subresource=None) -> Request:
        return Request("GET", resource_path(resource, self._ns(resource, namespace), name, subresource))

    def list_request(self, resource, namespace=None, label_selector=None, field_selector=None,
                     limit=None, continue_=None, resource_version=None) -> Request:
        params = _drop_none({"labelSelector": label_selector, "fieldSelector": field_selector,
                             "limit": limit, "continue": continue_,
                             "resourceVersion": resource_version})
        return Request("GET", resource_path(resource, namespace), params)

    def create_request(self, resource, obj, namespace=None, subresource=None, name=None) -> Request:
        path = resource_path(resource, self._ns(resource, namespace, obj), name, subresource)
        return Request("POST", path, body=obj)

    def replace_request(self, resource, obj, namespace=None, subresource=None) -> Request:
        name = obj["metadata"]["name"]
        return Request("PUT", resource_path(resource, self._ns(resource, namespace, obj), name,
                                            subresource), body=obj)

    def patch_request(self, resource, name, patch, namespace=None, patch_type="merge",
                      subresource=None) -> Request:
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type must be one of {sorted(PATCH_CONTENT_TYPES)}, not {patch_type!r}")
        path = resource_path(resource, self._ns(resource, namespace), name, subresource)
        return Request("PATCH", path, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type])

    def delete_request(self, resource, name, namespace=None, propagation_policy=None,
                       grace_period_seconds=None, preconditions=None) -> Request:
        body = _drop_none({"kind": "DeleteOptions", "apiVersion": "v1",
                           "propagationPolicy": propagation_policy,
                           "gracePeriodSeconds": grace_period_seconds,
                           "preconditions": preconditions})
        return Request("DELETE", resource_path(resource, self._ns(resource, namespace), name), body=body)

    def watch_request(self, resource, namespace=None, resource_version=None, label_selector=None,
                      field_selector=None, timeout_seconds=None, allow_bookmarks=True) -> Request:
        params = _drop_none({"watch": "1", "resourceVersion": resource_version,
                             "labelSelector": label_selector, "fieldSelector": field_selector,
                             "timeoutSeconds": timeout_seconds,
                             "allowWatchBookmarks": "true" if allow_bookmarks else None})
        return Request("GET", resource_path(resource, namespace), params)

    def bind_request(self, pod: dict, node: str) -> Request:
        meta = pod["metadata"]
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        if meta.get("uid"):
            binding["metadata"]["uid"] = meta["uid"]
        return self.create_request(PODS, binding, meta.get("namespace"), "binding", meta["name"])

    def _send_args(self, req: Request) -> dict:
        args = dict(method=req.method, url=req.path, params=req.params)
        if req.body is not None:
            args["content"] = dumps(req.body)
            args["headers"] = {"Content-Type": req.content_type}
        return args


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def merge_page(merged: Optional[dict], page: dict) -> dict:
    if merged is None:
        return page
    merged["items"].extend(page.get("items") or [])
    merged["metadata"] = page.get("metadata") or {}
    return merged


class ApiClient(Verbs):
    """Blocking client. Use as a context manager or call ``close()``."""

    def __init__(self, config: ClientConfig, timeout: float = 30.0):
        super().__init__(config)
        self.http = httpx.Client(**client_options(config, timeout))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, req: Request) -> dict:
        """Send one request; the decoded answer, or raise ApiError."""
        try:
            response = self.http.request(**self._send_args(req))
        except httpx.TransportError as err:
            raise unavailable(self.config.server + req.path, err) from None
        return _answer(response)

    def get(self, resource, name, namespace=None, subresource=None) -> dict:
        return self.call(self.get_request(resource, name, namespace, subresource))

    def list(self, resource, namespace=None, label_selector=None, field_selector=None,
             limit=None, continue_=None, resource_version=None) -> dict:
        """One page of a list; ``metadata.continue`` is set when there are more."""
        return self.call(self.list_request(resource, namespace, label_selector, field_selector,
                                           limit, continue_, resource_version))

    def list_all(self, resource, namespace=None, label_selector=None, field_selector=None,
                 page_size: int = 500) -> dict:
        """The whole list, paged with limit/continue; the last page's metadata (revision) kept."""
        merged, token = None, None
        while True:
            page = self.list(resource, namespace, label_selector, field_selector, page_size, token)
            merged = merge_page(merged, page)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return merged

    def create(self, resource, obj, namespace=None) -> dict:
        return self.call(self.create_request(resource, obj, namespace))

    def create_subresource(self, resource, name, subresource, obj, namespace=None) -> dict:
        """POST ``obj`` to ``subresource`` of object ``name`` (serviceaccounts/NAME/token,
        pods/NAME/eviction, ...); the answer. Errors raise as for ``create``."""
        return self.call(self.create_request(resource, obj, namespace, subresource, name))

    def replace(self, resource, obj, namespace=None, subresource=None) -> dict:
        return self.call(self.replace_request(resource, obj, namespace, subresource))

    def patch(self, resource, name, patch, namespace=None, patch_type="merge", subresource=None) -> dict:
        return self.call(self.patch_request(resource, name, patch, namespace, patch_type, subresource))

    def delete(self, resource, name, namespace=None, propagation_policy=None,
               grace_period_seconds=None, preconditions=None) -> dict:
        return self.call(self.delete_request(resource, name, namespace, propagation_policy,
                                             grace_period_seconds, preconditions))

    def bind(self, pod: dict, node: str) -> dict:
        """Bind ``pod`` to ``node`` through pods/{name}/binding."""
        return self.call(self.bind_request(pod, node))

    def watch(self, resource, namespace=None, resource_version=None, label_selector=None,
              field_selector=None, timeout_seconds=None, allow_bookmarks=True
              ) -> Iterator[tuple[str, dict]]:
        """Yield (type, object) until the server ends the stream; raises Gone on 410."""
        req = self.watch_request(resource, namespace, resource_version, label_selector, field_selector,
                                 timeout_seconds, allow_bookmarks)
        try:
            with self.http.stream(**self._send_args(req), timeout=_watch_timeout()) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, response.read())
                for line in response.iter_lines():
                    event = parse_watch_line(line)
                    if event:
                        yield event
        except httpx.TransportError as err:
            raise unavailable(self.config.server + req.path, err) from None


def _watch_timeout() -> httpx.Timeout:
    """Watches idle for long stretches: no read timeout, the server ends them."""
    return httpx.Timeout(None, connect=CONNECT_TIMEOUT)
