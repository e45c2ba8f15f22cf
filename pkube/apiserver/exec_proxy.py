"""pods/exec, pods/attach and pods/portforward over WebSocket, proxied to the kubelet as Kubernetes does.

kubectl (1.30+) opens ``GET .../pods/NAME/exec?command=...&stdin=...&stdout=...&tty=...``
as a WebSocket with subprotocols ``v5.channel.k8s.io`` (and older ones). The apiserver
opens the same WebSocket to the kubelet at ``/exec/{namespace}/{pod}/{container}?...``,
accepts the client with the subprotocol the kubelet chose, and relays frames both ways
untouched (the channel bytes mean nothing to us). Failures before the kubelet accepts
close the client's handshake with a policy-violation code and a readable reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Optional
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

try:  # optional: without it (and without uvicorn WebSocket support) exec is unavailable
    import wsproto
    import wsproto.events as ws_events
except ImportError:
    wsproto = ws_events = None

from pkube.apiserver import errors
from pkube.apiserver.auth.attributes import connect_verbs, request_attributes
from pkube.apiserver.auth.user import ANONYMOUS
from pkube.apiserver.encoding import error_response
from pkube.apiserver.kubelet_proxy import KubeletConnection, log_container
from pkube.apiserver.paths import Target, resolve
from pkube.apiserver.requestfilters import RequestFilters
from pkube.apiserver.resources import ResourceStore

log = logging.getLogger(__name__)

EXEC_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")
STREAMING = {"exec": EXEC_PARAMS, "attach": EXEC_PARAMS[1:], "portforward": ("ports",)}  # subresource -> kubelet query
KUBELET_PATHS = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
POLICY_VIOLATION = 1008
READ_SIZE = 65536


class KubeletSocket:
    """A client WebSocket to a kubelet, on asyncio streams and wsproto."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.subprotocol: Optional[str] = None

    @classmethod
    async def open(cls, url: str, subprotocols: list[str], ssl_context: Optional[ssl.SSLContext]) -> "KubeletSocket":
        """Connect and complete the handshake; ApiError when the kubelet refuses."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=ssl_context)
        sock = cls(reader, writer)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        await sock._send(ws_events.Request(host=parts.netloc, target=target, subprotocols=subprotocols))
        async for event in sock._events():
            if isinstance(event, ws_events.AcceptConnection):
                sock.subprotocol = event.subprotocol
                return sock
            if isinstance(event, (ws_events.RejectConnection, ws_events.RejectData)):
                await sock.close()
                raise errors.bad_request(f"the kubelet refused the exec (HTTP {getattr(event, 'status_code', '?')})")
        await sock.close()
        raise errors.unavailable("the kubelet closed the connection during the handshake")

    async def _send(self, event) -> None:
        self.writer.write(self.conn.send(event))
        await self.writer.drain()

    async def _events(self):
        while True:
            for event in self.conn.events():
                yield event
            data = await self.reader.read(READ_SIZE)
            if not data:
                return
            self.conn.receive_data(data)

    async def send(self, data) -> None:
        await self._send(ws_events.Message(data=data))

    async def relay_to(self, client: WebSocket) -> None:
        """Forward every message from the kubelet to ``client`` until either side closes."""
        text, binary = [], []
        async for event in self._events():
            if isinstance(event, ws_events.BytesMessage):
                binary.append(bytes(event.data))
                if event.message_finished:
                    await client.send_bytes(b"".join(binary))
                    binary.clear()
            elif isinstance(event, ws_events.TextMessage):
                text.append(event.data)
                if event.message_finished:
                    await client.send_text("".join(text))
                    text.clear()
            elif isinstance(event, ws_events.Ping):
                await self._send(event.response())
            elif isinstance(event, ws_events.CloseConnection):
                with contextlib.suppress(Exception):
                    await self._send(event.response())
                return

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn.state == wsproto.connection.ConnectionState.OPEN:
                await self._send(ws_events.CloseConnection(code=1000))
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def kubelet_ssl(connection: KubeletConnection) -> Optional[ssl.SSLContext]:
    """The TLS context for an https kubelet, from the connection's httpx-style options."""
    if connection.scheme != "https":
        return None
    verify = connection.client_options.get("verify", True)
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    cert = connection.client_options.get("cert")
    if cert:
        context.load_cert_chain(*(cert if isinstance(cert, tuple) else (cert,)))
    return context


class ExecProxy:
    """Serves pods/exec and pods/attach WebSockets."""

    def __init__(self, store: ResourceStore, registry, connection: KubeletConnection, authenticator=None,
                 authorizer=None, filters: Optional[RequestFilters] = None):
        self.store, self.registry, self.connection = store, registry, connection
        self.filters = filters or RequestFilters()   # the audit log (apiserver.requestfilters)
        self.authenticator = authenticator  # as create_app's: raises ApiError 401/403
        self.authorizer = authorizer        # as create_app's: authorize(Attributes) raises the 403
        self.nodes = registry.by_kind("Node", "")

    async def serve(self, websocket: WebSocket) -> None:
        """The WebSocket endpoint. A request that cannot be served is refused before the
        upgrade with an HTTP answer carrying its Status (kubectl prints its reason)."""
        tracked = self.filters.track(websocket)
        anonymous = ANONYMOUS if self.authenticator is not None else None
        user = lambda: getattr(websocket.state, "user", None) or anonymous   # noqa: E731 - as far as authentication got
        try:
            kubelet = await self._connect(websocket)
        except errors.ApiError as exc:
            log.info("exec refused for %s: %s", websocket.url.path, exc.message)
            tracked.websocket_event("ResponseComplete", exc.code, user())
            await _refuse(websocket, exc)
            return
        except Exception:  # noqa: BLE001 - the catch-all of this endpoint: log, refuse
            log.exception("exec proxy failed for %s", websocket.url.path)
            tracked.websocket_event("ResponseComplete", 500, user())
            await websocket.close(code=POLICY_VIOLATION, reason="internal error")
            return
        try:
            await websocket.accept(subprotocol=kubelet.subprotocol)
            tracked.websocket_event("ResponseStarted", 101, user())
            await _pump_both_ways(websocket, kubelet)
        finally:
            await kubelet.close()
            tracked.websocket_event("ResponseComplete", 101, user())

    async def refuse_spdy(self, request: Request) -> Response:
        """The SPDY fallback kubectl tries when a WebSocket upgrade fails (a POST asking for
        SPDY/3.1): the same checks as the WebSocket path, so the client learns why (an
        unreachable kubelet is a 503 naming the node); past them, a 400 saying that this
        apiserver speaks only WebSocket."""
        if self.authenticator is not None:
            request.state.user = await self.authenticator(request)
        url, node_name = await self._kubelet_url(request.url.path, request.query_params)
        parts = urlsplit(url)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 5)
            writer.close()
        except (OSError, TimeoutError) as exc:
            raise _unreachable(node_name, parts.netloc, exc) from None
        raise errors.bad_request("streaming over SPDY is not supported by this apiserver: "
                                 "use a client that speaks WebSocket (kubectl 1.30 or newer)")

    async def _connect(self, websocket: WebSocket) -> KubeletSocket:
        if self.authenticator is not None:
            websocket.state.user = await self.authenticator(websocket)
            if self.authorizer is not None:
                self._authorize(websocket)
        if wsproto is None:
            raise errors.unavailable("pods/exec needs the wsproto package on the apiserver")
        url, node_name = await self._kubelet_url(websocket.url.path, websocket.query_params)
        offered = list(websocket.scope.get("subprotocols") or [])
        try:
            return await KubeletSocket.open(url, offered, kubelet_ssl(self.connection))
        except OSError as exc:
            raise _unreachable(node_name, urlsplit(url).netloc, exc) from None

    def _authorize(self, websocket: WebSocket) -> None:
        """Raise the 403 unless the caller may both get and create this pods/exec (attach,
        portforward): the verbs Kubernetes 1.35+ checks for a WebSocket upgrade."""
        scope = websocket.scope
        attrs = request_attributes(websocket.state.user, "GET", scope["path"],
                                   scope.get("query_string", b"").decode())
        for verb in connect_verbs(attrs):
            self.authorizer.authorize(attrs.with_verb(verb))

    async def _kubelet_url(self, request_path: str, query) -> tuple[str, str]:
        """(the kubelet's URL for this request, the node's name); raises ApiError."""
        target = resolve(self.registry, request_path)
        if target.info.kind != "Pod" or target.subresource not in STREAMING or not target.name:
            raise errors.resource_not_found(request_path)
        pod = await self.store.get(Target(target.info, target.namespace, target.name))
        path = f"{KUBELET_PATHS[target.subresource]}/{target.namespace}/{target.name}"
        if target.subresource != "portforward":   # a pod's ports are not a container's
            path += "/" + log_container(pod, query.get("container"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {target.name} does not have a host assigned")
        node = await self.store.get(Target(self.nodes, None, node_name))
        params = [(k, v) for k, v in query.multi_items() if k in STREAMING[target.subresource]]
        return f"{self.connection.base_url(node)}/{path}?{urlencode(params)}", node_name


def _unreachable(node_name: str, address: str, exc: Exception) -> errors.ApiError:
    return errors.unavailable(f'cannot reach the kubelet of node "{node_name}" at {address}: {exc}')


async def _refuse(websocket: WebSocket, exc: errors.ApiError) -> None:
    """Refuse the upgrade with an HTTP answer holding the Status; a server without the
    denial-response extension gets a close with the reason instead."""
    if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        await websocket.send_denial_response(error_response(exc))
    else:
        await websocket.close(code=POLICY_VIOLATION, reason=exc.message[:120])


async def _pump_both_ways(client: WebSocket, kubelet: KubeletSocket) -> None:
    async def upstream() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
                if data is not None:
                    await kubelet.send(data)
        except (WebSocketDisconnect, ConnectionError):
            return

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(kubelet.relay_to(client))]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await client.close()
