"""Who may use the kubelet's API (port 10250), decided as Kubernetes' kubelet does with
``--anonymous-auth=false --authentication-token-webhook --authorization-mode=Webhook``.

Authentication: a client certificate the cluster CA signed (verified by the TLS handshake;
CN = user, O = groups), else a bearer token the apiserver vouches for (a TokenReview);
neither is 401. Authorization: a SubjectAccessReview to the apiserver for the ``nodes``
resource named after this node, with the subresource the path maps to (``stats`` for
/stats, ``metrics`` for /metrics, ``log`` for /logs, ``spec`` for /spec, ``proxy`` for
everything else - exec, attach, portForward, run, containerLogs, pods) and the verb of the
method; a refusal is 403 ``Forbidden (user=..., verb=..., resource=nodes, subresource=...)``.
The streaming paths (exec, attach, portForward, run) are WebSocket GETs but change things:
they are authorized as ``create``, as Kubernetes 1.35+ does for the apiserver's pods/exec.
Decisions are cached briefly (ALLOW_TTL / DENY_TTL seconds), tokens too (TOKEN_TTL).

The peer certificate reaches the app through ``PeerCertHttpProtocol`` and
``PeerCertWebSocketProtocol`` (uvicorn's protocols that put ``getpeercert()`` into the ASGI
scope's TLS extension, as the apiserver's do).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from pkube.client.errors import ApiError
from pkube.client.resources import Resource

log = logging.getLogger(__name__)

SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False)
ALLOW_TTL, DENY_TTL, TOKEN_TTL = 300.0, 30.0, 60.0
CACHE_SIZE = 4096
STREAMING_PREFIXES = ("/exec/", "/attach/", "/portForward/", "/run/")
SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"))
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def subresource_of(path: str) -> str:
    """The ``nodes`` subresource a kubelet path is authorized as."""
    for prefix, subresource in SUBRESOURCES:
        if path == prefix or path.startswith(prefix + "/"):
            return subresource
    return "proxy"


def verb_of(method: str, path: str) -> str:
    if path.startswith(STREAMING_PREFIXES):
        return "create"
    return _VERBS.get(method.upper(), method.lower())


def certificate_caller(scope) -> Optional[Caller]:
    """The user of the connection's verified client certificate, or None."""
    peer = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert")
    if not peer:
        return None
    names = [dict(rdn) for rdn in peer.get("subject", ())]
    common = [n["commonName"] for n in names if "commonName" in n]
    if not common:
        return None
    groups = tuple(n["organizationName"] for n in names if "organizationName" in n)
    return Caller(common[0], (*groups, "system:authenticated"))


class TTLCache:
    """Values for a while, bounded (cleared when full)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._items: dict = {}

    def get(self, key):
        found = self._items.get(key)
        if found is None or found[0] <= self.clock():
            return None
        return found[1]

    def put(self, key, value, ttl: float) -> None:
        if len(self._items) >= CACHE_SIZE:
            self._items.clear()
        self._items[key] = (self.clock() + ttl, value)


class KubeletAuth:
    """Authenticates and authorizes every request of the kubelet's API through the apiserver
    (``client``: the kubelet's own AsyncApiClient, whose node identity may create
    TokenReviews and SubjectAccessReviews). ``wrap(app)`` is the ASGI app to serve."""

    def __init__(self, client, node_name: str, clock: Callable[[], float] = time.monotonic):
        self.client, self.node_name = client, node_name
        self.decisions, self.tokens = TTLCache(clock), TTLCache(clock)

    def wrap(self, app):
        async def guarded(scope, receive, send):
            if scope["type"] not in ("http", "websocket"):
                return await app(scope, receive, send)
            refusal = await self.refusal(scope)
            if refusal is None:
                return await app(scope, receive, send)
            code, message = refusal
            await _refuse(scope, receive, send, code, message)
        return guarded

    async def refusal(self, scope) -> Optional[tuple[int, str]]:
        """None when the caller may do this; else (401 or 403, the message)."""
        caller = certificate_caller(scope) or await self._token_caller(_bearer(scope))
        if caller is None:
            return 401, "Unauthorized"
        method = scope.get("method", "GET")
        verb, subresource = verb_of(method, scope["path"]), subresource_of(scope["path"])
        if await self.allowed(caller, verb, subresource):
            return None
        return 403, (f"Forbidden (user={caller.name}, verb={verb}, resource=nodes, subresource={subresource})")

    async def allowed(self, caller: Caller, verb: str, subresource: str) -> bool:
        key = (caller.name, caller.groups, verb, subresource)
        cached = self.decisions.get(key)
        if cached is not None:
            return cached
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": caller.name, "groups": list(caller.groups), "uid": caller.uid,
                           "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource,
                                                  "name": self.node_name}}}
        try:
            answer = await self.client.create(SUBJECT_ACCESS_REVIEWS, review)
        except ApiError as err:
            log.warning("SubjectAccessReview for %s failed: %s", caller.name, err)
            return False
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self.decisions.put(key, allowed, ALLOW_TTL if allowed else DENY_TTL)
        return allowed

    async def _token_caller(self, token: str) -> Optional[Caller]:
        if not token:
            return None
        cached = self.tokens.get(token)
        if cached is not None:
            return cached or None
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            answer = await self.client.create(TOKEN_REVIEWS, review)
        except ApiError as err:
            log.warning("TokenReview failed: %s", err)
            return None
        status = answer.get("status") or {}
        user = status.get("user") or {}
        caller = (Caller(user.get("username", ""), tuple(user.get("groups") or ()), user.get("uid", ""))
                  if status.get("authenticated") and user.get("username") else None)
        self.tokens.put(token, caller or False, TOKEN_TTL if caller else DENY_TTL)
        return caller


def _bearer(scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


async def _refuse(scope, receive, send, code: int, message: str) -> None:
    """Answer ``code`` with ``message`` (a WebSocket is refused before its upgrade)."""
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "websocket":
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": code, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _PeerCertMixin:
    """For a uvicorn protocol class: put the connection's verified client certificate
    (``getpeercert()``, None without one) into each scope's TLS extension."""

    def connection_made(self, transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            tls = {"client_cert": ssl_object.getpeercert() or None}
            app = self.app

            async def with_tls(scope, receive, send):
                scope.setdefault("extensions", {})["tls"] = tls
                return await app(scope, receive, send)
            self.app = with_tls
        super().connection_made(transport)


class PeerCertHttpProtocol(_PeerCertMixin, AutoHTTPProtocol):
    """uvicorn's HTTP protocol with the client certificate in the scope."""


class PeerCertWebSocketProtocol(_PeerCertMixin, WSProtocol):
    """uvicorn's wsproto WebSocket protocol with the client certificate in the scope."""
