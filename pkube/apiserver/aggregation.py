"""API aggregation (apiregistration.k8s.io/v1 APIService), as kube-aggregator does it.

- Local APIServices: one per served group/version (``v1.`` for core, ``v1.apps`` ...), with
  upstream's groupPriorityMinimum/versionPriority (kube-apiserver's ``apiVersionPriorities``;
  CRD groups get 1000/100 as the crdregistration controller gives them), kept in the store by
  ``sync_local`` and always Available (reason Local).
- A registered APIService with ``spec.service`` is proxied: requests under
  /apis/<group>/<version>/ go to one endpoint of the Service over HTTPS, verified with
  ``caBundle`` (or not, with ``insecureSkipTLSVerify``) against the name
  ``<service>.<namespace>.svc``, with the caller in X-Remote-User / X-Remote-Group /
  X-Remote-Extra-* (the front-proxy headers) and the apiserver's proxy client certificate when
  it has one. Bodies stream both ways, so a watch through the proxy streams.
- ``check`` (run every ``interval`` seconds by the availability loop) writes each proxied
  APIService's Available condition: ServiceNotFound, ServiceAccessError, MissingEndpoints,
  FailedDiscoveryCheck, or True (Passed) when GET /apis/<group>/<version> answers 2xx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from typing import Optional

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pkube.api import meta
from pkube.api.kinds import Registry, version_priority
from pkube.apiserver import errors, tables
from pkube.apiserver.kubelet_proxy import relay
from pkube.apiserver.storage.interface import KeyExists, NotFound, Storage

log = logging.getLogger(__name__)

GROUP = "apiregistration.k8s.io"
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
CHECK_INTERVAL = 2.0
CHECK_TIMEOUT = 5.0
# kube-apiserver's apiVersionPriorities (pkg/controlplane/apiserver/aggregator.go): (group, version)
# -> (groupPriorityMinimum, versionPriority).
PRIORITIES = {
    ("", "v1"): (18000, 1), ("apps", "v1"): (17800, 15), ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15), ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v2"): (17500, 30), ("autoscaling", "v1"): (17500, 15), ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15), ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15), ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15), ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15), ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15), ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15), ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
    ("metrics.k8s.io", "v1beta1"): (100, 100),
}
CRD_PRIORITY = (1000, 100)
HOP_HEADERS = frozenset(("connection", "keep-alive", "transfer-encoding", "upgrade", "host", "authorization",
                         "content-length", "te", "trailer", "proxy-authorization"))


def apiservice_name(group: str, version: str) -> str:
    """``v1.apps``; ``v1.`` for the core group."""
    return f"{version}.{group}"


def local_apiservice(group: str, version: str, custom: bool, now: str) -> dict:
    """The Local APIService of a group/version served by this apiserver."""
    minimum, priority = PRIORITIES.get((group, version), CRD_PRIORITY if custom else (1000, 15))
    return {"apiVersion": f"{GROUP}/v1", "kind": "APIService",
            "metadata": {"name": apiservice_name(group, version),
                         "labels": {AUTOMANAGED: "true" if custom else "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": minimum,
                     "versionPriority": priority},
            "status": {"conditions": [available("True", "Local", "Local APIServices are always available", now)]}}


def available(status: str, reason: str, message: str, now: str) -> dict:
    return {"type": "Available", "status": status, "lastTransitionTime": now, "reason": reason, "message": message}


def with_available(service: dict, condition: dict) -> dict:
    """Pure: ``service`` with its Available condition ``condition`` (keeping the previous
    lastTransitionTime while the status does not change)."""
    status = dict(service.get("status") or {})
    others = [c for c in status.get("conditions") or [] if c.get("type") != "Available"]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), None)
    if old is not None and old.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": old.get("lastTransitionTime")}
    status["conditions"] = others + [condition]
    return {**service, "status": status}


def is_proxied(service: dict) -> bool:
    return bool((service.get("spec") or {}).get("service"))


class Aggregator:
    """The APIServices of one apiserver: keeps the Local ones, proxies the others, checks them.

    ``proxy_cert`` is (certificate file, key file) the apiserver presents to extension
    apiservers (kube-apiserver's --proxy-client-cert-file), or None."""

    def __init__(self, storage: Storage, registry: Registry, proxy_cert: Optional[tuple[str, str]] = None,
                 interval: float = CHECK_INTERVAL):
        self.storage, self.registry, self.proxy_cert, self.interval = storage, registry, proxy_cert, interval
        self.info = registry.by_kind("APIService", GROUP)
        self.services = registry.by_kind("Service", "")
        self.endpoints = registry.by_kind("Endpoints", "")
        self.proxied: dict[tuple[str, str], dict] = {}     # (group, version) -> APIService
        self._task: Optional[asyncio.Task] = None
        self._synced = -1           # the registry version the Local APIServices were made for

    async def start(self) -> None:
        await self.sync_local()
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ---- the store

    async def sync_local(self, custom_only: bool = False) -> None:
        """Create the Local APIService of every served group/version that has none (only those
        of CRDs with ``custom_only``); delete the CRD ones no longer served."""
        now = meta.now_rfc3339()
        served = {(r.group, r.version): r.custom is not None for r in self.registry.resources}
        served.setdefault(("metrics.k8s.io", "v1beta1"), False)
        listed = await self.storage.list(self.info.key_prefix())
        existing = {meta.name_of(o): o for o in listed.items}
        for (group, version), custom in served.items():
            name = apiservice_name(group, version)
            if name not in existing and (custom or not custom_only):
                with contextlib.suppress(KeyExists):
                    await self.storage.create(self.info.key(None, name), self._stamped(
                        local_apiservice(group, version, custom, now)))
        for name, obj in existing.items():
            spec = obj.get("spec") or {}
            if ((obj["metadata"].get("labels") or {}).get(AUTOMANAGED) == "true"
                    and (spec.get("group"), spec.get("version")) not in served):
                with contextlib.suppress(NotFound):
                    await self.storage.delete(self.info.key(None, name))
        self._synced = self.registry.version

    @staticmethod
    def _stamped(obj: dict) -> dict:
        return meta.stamp_new(obj)

    async def refresh(self) -> None:
        """Reread the proxied APIServices."""
        listed = await self.storage.list(self.info.key_prefix())
        self.proxied = {((o.get("spec") or {}).get("group", ""), (o.get("spec") or {}).get("version", "")): o
                        for o in listed.items if is_proxied(o)}

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self._synced != self.registry.version:
                    await self.sync_local(custom_only=True)     # CRDs came or went
                await self.refresh()
                await asyncio.gather(*(self._check_and_write(s) for s in list(self.proxied.values())))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep checking, as kube-aggregator does
                log.warning("APIService availability check failed: %s", exc)

    async def _check_and_write(self, service: dict) -> None:
        condition = await self.check(service)
        key = self.info.key(None, meta.name_of(service))
        with contextlib.suppress(NotFound):
            await self.storage.guaranteed_update(key, lambda current: with_available(current, condition))

    # ---- availability

    async def check(self, service: dict) -> dict:
        """The Available condition ``service`` should have now."""
        now = meta.now_rfc3339()
        try:
            base, sni = await self.resolve(service)
        except errors.ApiError as exc:
            return available("False", exc.reason, exc.message, now)
        spec = service["spec"]
        url = f"{base}/apis/{spec['group']}/{spec['version']}"
        try:
            async with self._client(service, CHECK_TIMEOUT) as client:
                resp = await client.get(url, extensions={"sni_hostname": sni})
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            return available("False", "FailedDiscoveryCheck", f"failing or missing response from {url}: {exc}", now)
        if not 200 <= resp.status_code < 300:
            return available("False", "FailedDiscoveryCheck",
                             f"failing or missing response from {url}: bad status from {url}: {resp.status_code}", now)
        return available("True", "Passed", "all checks passed", now)

    async def resolve(self, service: dict) -> tuple[str, str]:
        """(https://address:port of one endpoint of the APIService's Service, the TLS name
        <service>.<namespace>.svc); raises the ApiError whose reason says why not (503)."""
        ref = service["spec"]["service"]
        namespace, name, port = ref.get("namespace", ""), ref.get("name", ""), ref.get("port") or 443
        try:
            svc = await self.storage.get(self.services.key(namespace, name))
        except NotFound:
            raise errors.ApiError(503, "ServiceNotFound", f'service/{name} in "{namespace}" is not present') from None
        ports = [p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port]
        if not ports:
            raise errors.ApiError(503, "ServicePortError", f"service/{name} in \"{namespace}\" is not listening on port {port}")
        try:
            eps = await self.storage.get(self.endpoints.key(namespace, name))
        except NotFound:
            raise errors.ApiError(503, "MissingEndpoints", f"cannot find endpoints for service/{name} in \"{namespace}\"") from None
        address = endpoint_for(eps, ports[0])
        if address is None:
            raise errors.ApiError(503, "MissingEndpoints", f"endpoints for service/{name} in \"{namespace}\" have no addresses with port name \"{ports[0].get('name', '')}\"")
        host, target_port = address
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{target_port}", f"{name}.{namespace}.svc"

    def _client(self, service: dict, timeout: Optional[float]) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self._ssl(service), timeout=httpx.Timeout(timeout or 10.0, read=timeout))

    def _ssl(self, service: dict) -> ssl.SSLContext:
        spec = service["spec"]
        if spec.get("insecureSkipTLSVerify"):
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        else:
            bundle = spec.get("caBundle") or ""
            cadata = base64.b64decode(bundle).decode() if bundle else None
            context = ssl.create_default_context(cadata=cadata)
        if self.proxy_cert is not None:
            context.load_cert_chain(*self.proxy_cert)
        return context

    # ---- serving

    def aggregated(self, path: str) -> Optional[dict]:
        """The proxied APIService serving ``path`` (/apis/<group>/<version>[/...]), or None."""
        parts = path.split("/", 4)
        if len(parts) < 4 or parts[1] != "apis":
            return None
        return self.proxied.get((parts[2], parts[3]))

    def wrap(self, endpoint):
        """``endpoint`` with requests for aggregated group versions proxied instead."""
        async def serve(request: Request) -> Response:
            service = self.aggregated(request.url.path) if self.proxied else None
            if service is None:
                return await endpoint(request)
            return await self.proxy(request, service)
        return serve

    async def proxy(self, request: Request, service: dict) -> Response:
        """Send ``request`` to the APIService's endpoint and stream the answer back; 503 when
        it cannot be reached."""
        base, sni = await self.resolve(service)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS
                   and not k.lower().startswith("x-remote-")]
        headers += remote_user_headers(getattr(request.state, "user", None))
        client = self._client(service, None)
        outgoing = client.build_request(request.method, base + request.url.path, params=request.url.query,
                                        headers=headers, content=request.stream(),
                                        extensions={"sni_hostname": sni})
        try:
            response = await client.send(outgoing, stream=True)
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            await client.aclose()
            raise errors.unavailable(f"error trying to reach service: {exc}") from None
        passed = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
        return StreamingResponse(relay(client, response), status_code=response.status_code, headers=passed)

    # ---- discovery

    def groups(self) -> list[dict]:
        """APIGroup documents of the aggregated groups (versions by versionPriority, then
        Kubernetes' version order), for /apis."""
        by_group: dict[str, list[dict]] = {}
        for (group, _), service in self.proxied.items():
            by_group.setdefault(group, []).append(service)
        docs = []
        for group, services in by_group.items():
            services.sort(key=lambda s: (-int(s["spec"].get("versionPriority") or 0),
                                         version_priority(s["spec"]["version"])))
            versions = [{"groupVersion": f"{group}/{s['spec']['version']}", "version": s["spec"]["version"]}
                        for s in services]
            docs.append({"name": group, "versions": versions, "preferredVersion": versions[0]})
        return docs

    def group(self, name: str) -> Optional[dict]:
        return next((g for g in self.groups() if g["name"] == name), None)


def remote_user_headers(user) -> list[tuple[str, str]]:
    """The front-proxy headers naming ``user`` (an apiserver.auth.user.UserInfo, or None)."""
    if user is None:
        return [("X-Remote-User", "system:anonymous"), ("X-Remote-Group", "system:unauthenticated")]
    headers = [("X-Remote-User", user.name)] + [("X-Remote-Group", g) for g in user.groups]
    for key, values in (getattr(user, "extra", None) or {}).items():
        for value in values if isinstance(values, (list, tuple)) else [values]:
            headers.append((f"X-Remote-Extra-{header_key_escape(key)}", value))
    return headers


_TOKEN_BYTES = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def header_key_escape(key: str) -> str:
    """An extra's key as client-go's auth proxy round tripper writes it into a header name:
    every byte that is not a header token character, and '%', as %XX (the requestheader
    authenticator unescapes it: ``authentication.kubernetes.io%2Fpod-name``)."""
    return "".join(chr(b) if b in _TOKEN_BYTES else f"%{b:02X}" for b in key.encode())


def endpoint_for(endpoints: dict, service_port: dict) -> Optional[tuple[str, int]]:
    """(address, port) of the first ready address of ``endpoints`` whose port matches the
    Service port by name (or the only port when the Service port has no name)."""
    wanted = service_port.get("name") or ""
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p for p in ports if (p.get("name") or "") == wanted), None)
        if port is None and len(ports) == 1 and not wanted:
            port = ports[0]
        addresses = subset.get("addresses") or []
        if port is not None and addresses:
            return addresses[0].get("ip"), port.get("port")
    return None


# kubectl get apiservices: NAME, SERVICE ("Local" or namespace/name), AVAILABLE ("True" or
# "False (reason)"), AGE, as kube-aggregator's printers print them.
SERVICE_COLUMN = tables.Column("Service", description="The reference to the service that hosts this API endpoint.")
AVAILABLE_COLUMN = tables.Column("Available", description="Whether this service is available.")


def _cells(obj: dict, now) -> list:
    ref = (obj.get("spec") or {}).get("service")
    service = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else "Local"
    condition = next((c for c in (obj.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Available"), None)
    shown = "Unknown" if condition is None else condition.get("status", "Unknown")
    if condition is not None and shown != "True":
        shown = f"{shown} ({condition.get('reason', '')})"
    return [meta.name_of(obj), service, shown,
            tables.age_since(obj["metadata"].get("creationTimestamp", ""), now)]


tables.PRINTERS["apiservices"] = ((tables.NAME, SERVICE_COLUMN, AVAILABLE_COLUMN, tables.AGE), _cells)
