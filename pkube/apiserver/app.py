"""``create_app``: the apiserver as a FastAPI application over a Storage.

No module-level app: every dependency is a parameter, so tests and
``pkube up`` build exactly the server they need. ``authenticator`` (an async
callable taking the Request, raising ``ApiError`` 401/403) is the hook for
TLS client certificates and bearer tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Awaitable, Callable, Optional, Sequence

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pkube.api.defaults import apply_defaults
from pkube.api.kinds import Registry
from pkube.apiserver import discovery, errors, metrics_api
from pkube.apiserver.aggregation import Aggregator
from pkube.apiserver.allocators import NodePortAllocator, ServiceIPAllocator
from pkube.apiserver.auth.attributes import from_request_info
from pkube.apiserver.auth.reviews import Reviews
from pkube.apiserver.authenticationinfo import AuthenticationInfoPublisher
from pkube.apiserver.bootstrap import KubernetesService
from pkube.apiserver.endpointleases import DEFAULT_DURATION as DEFAULT_ENDPOINT_LEASE
from pkube.apiserver.endpointleases import EndpointLeases
from pkube.apiserver.certificates import CertificateSigningRequests
from pkube.apiserver.customresources import CustomResourceDefinitions
from pkube.apiserver.deletion import Deleter
from pkube.apiserver.encoding import dumps, error_response, json_response, wire
from pkube.apiserver.event_ttl import DEFAULT_TTL as DEFAULT_EVENT_TTL
from pkube.apiserver.event_ttl import EventReaper
from pkube.apiserver.exec_proxy import ExecProxy
from pkube.apiserver.metrics import ApiserverMetrics
from pkube.apiserver.metrics_api import MetricsAPI
from pkube.apiserver.kubelet_proxy import KubeletConnection, LogProxy
from pkube.apiserver.namespaces import Namespaces
from pkube.apiserver.openapi import OpenAPIDocuments
from pkube.apiserver.requestfilters import RequestFilters
from pkube.apiserver.resources import ResourceStore
from pkube.apiserver.routes import ResourceHandlers
from pkube.apiserver.services import ServiceAllocations
from pkube.apiserver.storage.interface import SpaceExceeded, Storage, StorageUnavailable
from pkube.apiserver.watch import EventEncoder
from pkube.client.metrics import new_registry

log = logging.getLogger(__name__)

Authenticator = Callable[[Request], Awaitable[object]]
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
# FastAPI's built-in OpenTelemetry wrapper costs ~0.15 ms a request; nothing here exports it.
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


class NoValidation:
    """Stands in when api.validation is not available: accepts everything."""

    def validate(self, obj: dict, old: Optional[dict] = None, strict: bool = False) -> list:
        return []

    def metadata_problems(self, obj: dict, old: Optional[dict] = None, strict: bool = False) -> list:
        return []


def default_validator():
    """The schema + semantic Validator of api.validation, built once."""
    try:
        from pkube.api.validation import Validator
    except ImportError:
        log.warning("api.validation is not available: objects are not validated")
        return NoValidation()
    return Validator()


def create_app(storage: Storage, *, validator=None, defaults: Callable[[dict], dict] = apply_defaults,
               service_cidr: str = "10.96.0.0/12", node_port_range: tuple[int, int] = (30000, 32767),
               authenticator: Optional[Authenticator] = None, bookmark_interval: float = 60.0,
               registry: Optional[Registry] = None, close_storage: bool = False,
               kubelet: Optional[KubeletConnection] = None,
               event_ttl: float = DEFAULT_EVENT_TTL,
               advertise: Optional[tuple[str, int, str]] = None,
               endpoint_lease_duration: float = DEFAULT_ENDPOINT_LEASE,
               admission_plugins: Sequence[object] = (),
               filters: Optional[RequestFilters] = None,
               authorizer: Optional[object] = None,
               service_accounts: Optional[object] = None,
               proxy_client_cert: Optional[tuple[str, str]] = None,
               authentication_info: Optional[Callable[[], object]] = None,
               metrics: Optional[ApiserverMetrics] = None) -> FastAPI:
    """Build the apiserver. The lifespan creates the system namespaces and starts
    the namespace tasks; ``close_storage`` closes ``storage`` at shutdown.
    ``kubelet`` says how pods/log reaches kubelets (https on 10250 by default).
    Events older than ``event_ttl`` seconds are deleted (0: never). With ``advertise``
    (address, port, scheme), the ``kubernetes`` Service is made to point there, and at every
    other apiserver that renewed its endpoint Lease within ``endpoint_lease_duration`` seconds.
    ``admission_plugins`` run on every write, in order (apiserver.admission).
    ``filters`` holds the audit log and the in-flight limits (apiserver.requestfilters).
    ``authorizer`` (apiserver.auth.authorizer.Union: ``authorize(Attributes)`` raising the
    403, optional ``start``/``stop``; or a function(storage) making one) decides every
    authenticated request.
    ``service_accounts`` (apiserver.tokenrequest.ServiceAccountTokens) serves TokenRequest and
    TokenReview and adds the ServiceAccount admission plugin (or a function(storage) making it).
    ``authentication_info`` (a function returning apiserver.authenticationinfo's
    AuthenticationInfo) is published in kube-system/extension-apiserver-authentication.
    ``metrics`` (apiserver.metrics) are kept by the request filters and served on /metrics
    (default: a registry of this app's own)."""
    filters = filters or RequestFilters()
    if metrics is None:
        metrics = ApiserverMetrics(new_registry())
        metrics.count_objects_with(getattr(storage, "key_counts", None))
    filters.metrics = metrics
    metrics.measure_limiter(filters.limiter)
    if authenticator is None:
        authorizer = None          # without identities there is nobody to authorize
    elif authorizer is not None and not hasattr(authorizer, "authorize"):
        authorizer = authorizer(storage)
    registry = registry or Registry()
    namespaces = Namespaces(storage, registry)
    services = ServiceAllocations(ServiceIPAllocator(storage, service_cidr),
                                  NodePortAllocator(storage, node_port_range),
                                  registry.by_kind("Service", ""))
    store = ResourceStore(storage, validator or default_validator(), defaults, namespaces, services)
    deleter = Deleter(store, namespaces)
    namespaces.deleter = deleter
    definitions = CustomResourceDefinitions(storage, registry, deleter)
    aggregator = Aggregator(storage, registry, proxy_client_cert)   # APIServices (pkube/apiserver/aggregation.py)
    store.check_names = definitions.check_names
    store.admission.add(CertificateSigningRequests())
    if service_accounts is not None and not hasattr(service_accounts, "wrap"):
        service_accounts = service_accounts(storage)       # a function(storage) making one
    if service_accounts is not None:
        store.admission.add(service_accounts.admission)
        service_accounts.token_authenticators = getattr(authenticator, "token_authenticators",
                                                        service_accounts.token_authenticators)
    for plugin in admission_plugins:
        store.admission.add(plugin)
    from pkube.api import patch as patches
    handlers = ResourceHandlers(registry, store, deleter, EventEncoder(), bookmark_interval,
                                getattr(patches, "strategic_merge_patch", None),
                                LogProxy(store, registry, kubelet or KubeletConnection()))

    reaper = EventReaper(storage, ttl=event_ttl) if event_ttl > 0 else None
    kubernetes_service = (KubernetesService(store, registry, service_cidr, *advertise)
                          if advertise is not None else None)
    publisher = (AuthenticationInfoPublisher(store, registry, authentication_info)
                 if authentication_info is not None else None)
    endpoint_leases = (EndpointLeases(store, registry, kubernetes_service, endpoint_lease_duration)
                       if kubernetes_service is not None else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await filters.start()
        await namespaces.start()
        if authorizer is not None and hasattr(authorizer, "start"):
            await authorizer.start()
        await definitions.start()
        await aggregator.start()
        if service_accounts is not None:
            await service_accounts.start()
        await store.admission.start()
        if kubernetes_service is not None:
            await kubernetes_service.ensure()
            await endpoint_leases.start()
        if reaper is not None:
            reaper.start()
        if publisher is not None:
            await publisher.start()
        try:
            yield
        finally:
            if publisher is not None:
                await publisher.stop()
            if endpoint_leases is not None:
                await endpoint_leases.stop()
            if reaper is not None:
                await reaper.stop()
            await store.admission.stop()
            if service_accounts is not None:
                await service_accounts.stop()
            if authorizer is not None and hasattr(authorizer, "stop"):
                await authorizer.stop()
            await definitions.stop()
            await aggregator.stop()
            await namespaces.stop()
            if close_storage:
                await storage.close()
            await filters.stop()

    app = ApiServerApp(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None,
                       telemetry=NO_TELEMETRY)
    app.state.storage, app.state.registry, app.state.store = storage, registry, store
    guarded = _guard(authenticator, filters, authorizer)
    _add_discovery(app, registry, storage, guarded, aggregator)
    _add_openapi(app, registry, guarded)
    app.add_route("/metrics", guarded(metrics.serve), methods=["GET"])
    streams = ExecProxy(store, registry, kubelet or KubeletConnection(), authenticator, authorizer, filters)
    for subresource in ("exec", "attach", "portforward"):
        app.router.add_websocket_route(f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/{subresource}",
                                       streams.serve)
    dispatch = handlers.dispatch if service_accounts is None else service_accounts.wrap(handlers.dispatch)
    resources = guarded(aggregator.wrap(Reviews(authorizer).wrap(dispatch)))
    app.add_route("/api/{rest:path}", resources, methods=_ALL_METHODS)
    app.add_route("/apis/{rest:path}", resources, methods=_ALL_METHODS)
    app.resource_endpoint = resources
    app.stream_fallback_endpoint = guarded(streams.refuse_spdy)
    app.metrics_endpoint = guarded(MetricsAPI(store, storage, registry, kubelet or KubeletConnection()).handle)
    _add_error_handlers(app)
    return app


class ApiServerApp(FastAPI):
    """FastAPI with a short way in for resource requests.

    Plain HTTP requests for resources go straight to ``resource_endpoint``
    (the same endpoint FastAPI's catch-all routes call), skipping the
    middleware and routing layers in front of it: about a fifth of the CPU
    of a create. Discovery, OpenAPI, health checks, WebSockets and the
    lifespan take FastAPI's way."""

    resource_endpoint: Optional[Callable[[Request], Awaitable[Response]]] = None
    stream_fallback_endpoint: Optional[Callable[[Request], Awaitable[Response]]] = None
    metrics_endpoint: Optional[Callable[[Request], Awaitable[Response]]] = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.metrics_endpoint is not None and metrics_api.is_metrics_path(scope["path"]):
            scope["app"] = self
            response = await self.metrics_endpoint(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "http" and self.resource_endpoint is not None and is_resource_path(scope["path"]):
            scope["app"] = self
            endpoint = self.resource_endpoint
            if self.stream_fallback_endpoint is not None and is_stream_fallback(scope):
                endpoint = self.stream_fallback_endpoint
            response = await endpoint(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def is_resource_path(path: str) -> bool:
    """True for paths below discovery: /api/v1/<...> and /apis/<group>/<version>/<...>."""
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)


STREAM_SUBRESOURCES = ("exec", "attach", "portforward")


def is_stream_fallback(scope) -> bool:
    """A plain HTTP request for pods/exec, attach or portforward: kubectl's SPDY fallback
    after a refused WebSocket upgrade (a POST, or a GET asking for an upgrade)."""
    parts = scope["path"].strip("/").split("/")
    return (len(parts) == 7 and parts[:2] == ["api", "v1"] and parts[4] == "pods"
            and parts[6] in STREAM_SUBRESOURCES and scope["method"] in ("POST", "GET"))


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _guard(authenticator: Optional[Authenticator], filters: RequestFilters, authorizer=None):
    """Wrap an endpoint: authenticate (when configured), audit and limit (``filters``),
    authorize (when configured), answer every failure as a Status."""
    def wrap(endpoint: Callable[[Request], Awaitable[Response]]):
        async def guarded(request: Request) -> Response:
            tracked = filters.track(request)
            try:
                if authenticator is not None and request.url.path not in PUBLIC_PATHS:
                    request.state.user = await authenticator(request)
                    await tracked.admit(request.state.user)
                    if authorizer is not None:
                        authorizer.authorize(from_request_info(request.state.user, tracked.info,
                                                               request.query_params))
                else:
                    await tracked.admit(getattr(request.state, "user", None))
                response = await endpoint(request)
            except errors.ApiError as exc:
                response = error_response(exc)
            except SpaceExceeded as exc:
                response = error_response(errors.storage_error(str(exc)))
            except StorageUnavailable as exc:
                response = error_response(errors.unavailable(f"the storage is unavailable: {exc}"))
            except Exception:  # noqa: BLE001 - the catch-all: log it, answer a Status
                log.exception("unhandled error serving %s %s", request.method, request.url.path)
                response = error_response(errors.internal_error("unexpected server error"))
            return tracked.finish(response)
        return guarded
    return wrap


def _add_discovery(app: FastAPI, registry: Registry, storage: Storage, guarded, aggregator: Aggregator) -> None:
    def document(make, wrap=lambda endpoint: endpoint):
        async def endpoint(request: Request) -> Response:
            doc = make(request)
            if doc is None:   # no such group or version
                raise errors.page_not_found()
            return json_response(doc)
        return guarded(wrap(endpoint))

    async def ready(request: Request) -> Response:
        try:
            await storage.current_revision()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return Response(f"[-]etcd failed: {exc}\nreadyz check failed\n", 500, media_type="text/plain")
        return Response("ok", media_type="text/plain")

    async def live(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    server = lambda r: f"{r.url.hostname}:{r.url.port}"  # noqa: E731
    aggregated = _aggregated_discovery(registry, aggregator, guarded)
    app.add_route("/version", document(lambda r: discovery.version_info()), methods=["GET"])
    app.add_route("/api", aggregated(True, lambda r: discovery.api_versions(server(r))), methods=["GET"])
    app.add_route("/api/{version}", document(
        lambda r: discovery.resource_list(registry, "", r.path_params["version"])), methods=["GET"])
    app.add_route("/apis", aggregated(False, lambda r: discovery.api_group_list(
        registry, (metrics_api.group_document(), *aggregator.groups()))), methods=["GET"])
    app.add_route("/apis/{group}", document(
        lambda r: discovery.api_group(registry, r.path_params["group"]) or aggregator.group(r.path_params["group"])),
        methods=["GET"])
    app.add_route("/apis/{group}/{version}", document(
        lambda r: discovery.resource_list(registry, r.path_params["group"], r.path_params["version"]),
        aggregator.wrap), methods=["GET"])
    for path in ("/healthz", "/livez"):
        app.add_route(path, live, methods=["GET"])
    app.add_route("/readyz", ready, methods=["GET"])


def _aggregated_discovery(registry: Registry, aggregator: Aggregator, guarded):
    """The endpoint of /api (`legacy`) or /apis, whose plain document `make(request)` makes:
    a client that asks for apidiscovery.k8s.io/v2 gets the aggregated document instead
    (encoded once per registry version: a CRD change rebuilds it), unless extension apiservers
    serve groups (their resources are not known here: the client then reads the plain document
    and each group version, as before)."""
    encoded: dict[tuple[bool, int], bytes] = {}
    vary = {"Vary": "Accept"}

    def endpoint_of(legacy: bool, make):
        async def endpoint(request: Request) -> Response:
            if not discovery.wants_aggregated(request.headers.get("accept", "")) or aggregator.groups():
                return json_response(make(request), headers=vary)
            key = (legacy, registry.version)
            if key not in encoded:
                encoded.clear()
                encoded[key] = wire(discovery.aggregated_groups(
                    registry, legacy, ((metrics_api.group_document(), metrics_api.resource_list()),)))
            return Response(encoded[key], media_type=discovery.AGGREGATED, headers=vary)
        return guarded(endpoint)
    return endpoint_of


def _add_openapi(app: FastAPI, registry: Registry, guarded) -> None:
    """/openapi/v2 and /openapi/v3[/GROUP-VERSION], encoded once per registry version
    (a CRD change rebuilds them), with ETags."""
    encoded: dict[str, tuple[bytes, str]] = {}
    built: list = [None, None]  # [registry version, OpenAPIDocuments]

    def documents() -> OpenAPIDocuments:
        if built[0] != registry.version:
            built[:] = [registry.version, OpenAPIDocuments(registry.resources)]
            encoded.clear()
        return built[1]

    def cached(path: str, make) -> Optional[tuple[bytes, str]]:
        docs = documents()
        if path not in encoded:
            doc = make(docs)
            if doc is None:
                return None
            body = dumps(doc)
            encoded[path] = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        return encoded[path]

    def answer(request: Request, found: Optional[tuple[bytes, str]]) -> Response:
        if found is None:
            raise errors.resource_not_found(request.url.path)
        body, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache, private"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def v2(request: Request) -> Response:
        return answer(request, cached("v2", lambda docs: docs.v2))

    async def v3_root(request: Request) -> Response:
        return answer(request, cached("v3", lambda docs: docs.v3_root))

    async def v3_group(request: Request) -> Response:
        group_version = request.path_params["group_version"]
        return answer(request, cached(f"v3/{group_version}", lambda docs: docs.v3_group(group_version)))

    app.add_route("/openapi/v2", guarded(v2), methods=["GET"])
    app.add_route("/openapi/v3", guarded(v3_root), methods=["GET"])
    app.add_route("/openapi/v3/{group_version:path}", guarded(v3_group), methods=["GET"])


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            return error_response(errors.method_not_allowed(request.method, request.url.path))
        if exc.status_code == 404:   # no route at all
            return error_response(errors.page_not_found())
        return error_response(errors.ApiError(exc.status_code, "BadRequest" if exc.status_code < 500
                                              else "InternalError", str(exc.detail)))

    async def any_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error serving %s %s", request.method, request.url.path)
        return error_response(errors.internal_error("unexpected server error"))

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, any_error)
