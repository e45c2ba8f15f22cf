"""The kubelet's HTTPS API (port 10250), on Kubernetes' own paths:

    GET  /healthz                                  "ok"
    GET  /pods                                     PodList of the pods this kubelet runs
    GET  /stats/summary                            stats Summary (kubelet.stats)
    GET  /metrics                                  Prometheus text (kubelet.metrics)
    GET  /containerLogs/{ns}/{pod}/{container}     text/plain (follow, previous, tailLines,
                                                   timestamps, sinceSeconds, sinceTime, limitBytes)
    WS   /exec/{ns}/{pod}/{container}?command=...  kubelet.remotecommand (channel protocol)
    WS   /attach/{ns}/{pod}/{container}
    WS   /portForward/{ns}/{pod}?ports=...         kubelet.portforward

The apiserver proxies pods/log, pods/exec and pods/attach here. Errors a client sees
through the apiserver (a missing container) are plain text, as the kubelet's are: the
apiserver turns them into its own Status. A non-WebSocket exec, attach or portForward
(SPDY, which this kubelet does not speak) gets a 400 Status at once.

Blocking runtime calls go through asyncio.to_thread; streams that block for long (a
followed log, a command's output) get threads of their own (kubelet.threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Optional

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from pkube.kubelet import portforward, remotecommand, streams
from pkube.client.metrics import exposition
from pkube.kubelet.certs import ensure_serving_cert
from pkube.kubelet.lookup import container_instances, pod_sandbox
from pkube.kubelet.stats import StatsCollector
from pkube.kubelet.threads import iterate_in_thread

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the kubelet's main owns SIGTERM and SIGINT."""

    def capture_signals(self):
        return contextlib.nullcontext()


@dataclass(frozen=True)
class LogOptions:
    """The containerLogs query, checked."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: Optional[int] = None
    since: Optional[float] = None      # epoch seconds
    limit_bytes: Optional[int] = None

    @classmethod
    def from_query(cls, params, now: Callable[[], float] = time.time) -> "LogOptions":
        """Raises ValueError with a readable message on a malformed or contradictory query."""
        if "sinceSeconds" in params and "sinceTime" in params:
            raise ValueError("at most one of sinceTime or sinceSeconds may be specified")
        since = None
        if "sinceSeconds" in params:
            since = now() - _number(params, "sinceSeconds", minimum=1)
        elif "sinceTime" in params:
            from pkube.runtime.logs import parse_time
            try:
                since = parse_time(params["sinceTime"])
            except ValueError:
                raise ValueError(f"sinceTime: invalid time {params['sinceTime']!r}: want RFC 3339") from None
        return cls(follow=streams.query_flag(params, "follow"), previous=streams.query_flag(params, "previous"),
                   timestamps=streams.query_flag(params, "timestamps"),
                   tail=_number(params, "tailLines", minimum=0) if "tailLines" in params else None,
                   since=since,
                   limit_bytes=_number(params, "limitBytes", minimum=1) if "limitBytes" in params else None)


def _number(params, name: str, minimum: int) -> int:
    text = params[name]
    if not text.lstrip("-").isdigit() or int(text) < minimum:
        raise ValueError(f"{name}: invalid value {text!r}: must be an integer >= {minimum}")
    return int(text)


class KubeletServer:
    """Serves the kubelet's API over HTTPS in the running event loop.

    `runtime` is the runtime.Runtime the kubelet runs pods with; `pods_fn()` returns the
    pods it runs (for /pods; called on the event loop, so it must not block; None serves
    an empty list). The serving certificate is kubelet.certs' (in `cert_dir`), for
    `node_name`, this host's name, `addresses` and the loopback addresses, unless `tls_files`
    (certificate, key) name one (the cluster CA's, from `pkube up`). With
    `client_ca_file`, clients must present a certificate signed by that CA (the
    apiserver's kubelet client certificate); without, anyone who reaches the port is
    served. With `auth` (kubelet.auth.KubeletAuth) a certificate is optional and every
    caller is authenticated (certificate or bearer token) and authorized by the apiserver.
    ``metrics_registry`` (prometheus_client) is served on /metrics (empty without one)."""

    def __init__(self, runtime, *, host: str = "0.0.0.0", port: int = 10250, cert_dir: str, node_name: str,
                 pods_fn: Optional[Callable[[], list]] = None, addresses: tuple[str, ...] = (),
                 client_ca_file: Optional[str] = None, tls_files: tuple[str, str] = ("", ""), auth=None,
                 metrics_registry=None):
        self.metrics_registry = metrics_registry
        self.auth = auth   # a kubelet.auth.KubeletAuth: every caller authenticated and authorized
        self.runtime, self.host, self.port = runtime, host, port
        self.tls_files = tls_files
        self.cert_dir, self.node_name, self.addresses = cert_dir, node_name, tuple(addresses)
        self.client_ca_file = client_ca_file
        self.pods_fn = pods_fn or (lambda: [])
        self.stats = StatsCollector(runtime, node_name)
        self._stats_lock = threading.Lock()
        self._server: Optional[uvicorn.Server] = None
        self._task: Optional[asyncio.Task] = None

    # ----- lifecycle -----

    async def start(self) -> None:
        """Make (or reuse) the serving certificate and serve; returns once listening.
        Raises OSError when the port is taken, RuntimeError when serving fails to start."""
        cert, key = self.tls_files
        if not (cert and key):
            cert, key = await asyncio.to_thread(ensure_serving_cert, self.cert_dir, *self._cert_names())
        client_auth = ({"ssl_ca_certs": self.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
                       if self.client_ca_file else {})
        app, protocols = self.app(), {"ws": "wsproto"}
        if self.auth is not None:
            from pkube.kubelet.auth import PeerCertHttpProtocol, PeerCertWebSocketProtocol
            app, protocols = self.auth.wrap(app), {"http": PeerCertHttpProtocol, "ws": PeerCertWebSocketProtocol}
            if self.client_ca_file:     # a certificate is one way in, a token another: none is a 401
                client_auth["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
        config = uvicorn.Config(app, host=self.host, port=self.port, ssl_certfile=cert, ssl_keyfile=key,
                                **client_auth, **protocols, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)
        sock = _listen(self.host, self.port)   # here, not in uvicorn: it exits the process when it cannot bind
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="kubelet-server")
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()   # raises what stopped it
                raise RuntimeError(f"the kubelet server on {self.host}:{self.port} stopped while starting")
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"the kubelet server on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop serving (open streams are closed); idempotent."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, timeout=10)
        self._server = self._task = None

    def _cert_names(self) -> tuple[list[str], list[str]]:
        names = list(dict.fromkeys([self.node_name, socket.gethostname(), "localhost"]))
        wildcard = ("0.0.0.0", "::", "")
        ips = list(dict.fromkeys([*self.addresses, *(() if self.host in wildcard else (self.host,)),
                                  "127.0.0.1", "::1"]))
        return names, ips

    # ----- routes -----

    def app(self) -> Starlette:
        """The ASGI application (also usable without TLS, e.g. behind a test server)."""
        refused = self.spdy_refused
        return Starlette(routes=[
            Route("/healthz", self.healthz),
            Route("/pods", self.pods),
            Route("/stats/summary", self.stats_summary),
            Route("/metrics", self.metrics),
            Route("/containerLogs/{namespace}/{pod}/{container}", self.container_logs),
            WebSocketRoute("/exec/{namespace}/{pod}/{container}", self.exec_ws),
            WebSocketRoute("/attach/{namespace}/{pod}/{container}", self.attach_ws),
            WebSocketRoute("/portForward/{namespace}/{pod}", self.port_forward_ws),
            Route("/exec/{namespace}/{pod}/{container}", refused, methods=["GET", "POST"]),
            Route("/attach/{namespace}/{pod}/{container}", refused, methods=["GET", "POST"]),
            Route("/portForward/{namespace}/{pod}", refused, methods=["GET", "POST"]),
        ])

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def pods(self, request: Request) -> Response:
        pods = self.pods_fn()
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(pods)})

    async def stats_summary(self, request: Request) -> Response:
        def summary() -> dict:
            with self._stats_lock:
                return self.stats.summary()
        return JSONResponse(await asyncio.to_thread(summary))

    async def metrics(self, request: Request) -> Response:
        if self.metrics_registry is None:
            return PlainTextResponse("")
        body, content_type = exposition(self.metrics_registry, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    async def spdy_refused(self, request: Request) -> Response:
        return Response(remotecommand.status_body(remotecommand.spdy_refused()), status_code=400,
                        media_type="application/json")

    async def exec_ws(self, websocket: WebSocket) -> None:
        await remotecommand.serve(websocket, self.runtime, attach=False)

    async def attach_ws(self, websocket: WebSocket) -> None:
        await remotecommand.serve(websocket, self.runtime, attach=True)

    async def port_forward_ws(self, websocket: WebSocket) -> None:
        await portforward.serve(websocket, self.runtime)

    # ----- logs -----

    async def container_logs(self, request: Request) -> Response:
        ns, pod, name = (request.path_params[k] for k in ("namespace", "pod", "container"))
        try:
            options = LogOptions.from_query(request.query_params)
        except ValueError as exc:
            return PlainTextResponse(str(exc), 400)
        instances = await asyncio.to_thread(container_instances, self.runtime, ns, pod, name)
        index = 1 if options.previous else 0
        if len(instances) <= index:
            message = await asyncio.to_thread(self._missing_log_message, ns, pod, name, options.previous)
            return PlainTextResponse(message, 404)
        body = self._log_stream(instances[index], options)
        return StreamingResponse(_limited(body, options.limit_bytes), media_type="text/plain")

    def _missing_log_message(self, ns: str, pod: str, name: str, previous: bool) -> str:
        """Kubernetes' words for a log that is not there."""
        if pod_sandbox(self.runtime, ns, pod) is None:
            return f'pod "{pod}" in namespace "{ns}" is not running on this node'
        if previous:
            return f'previous terminated container "{name}" in pod "{pod}" not found'
        return f'container "{name}" in pod "{pod}" is not available'

    async def _log_stream(self, record, options: LogOptions) -> AsyncIterator[bytes]:
        """The rendered log entries; with `follow`, until the container stops."""
        if not options.follow:
            entries = await asyncio.to_thread(self.runtime.logs, record.id, tail=options.tail, since=options.since)
            for entry in entries:
                yield entry.render(options.timestamps)
            return
        stop = threading.Event()
        follow = self._follower(record.id, options, stop)
        async with contextlib.aclosing(iterate_in_thread(follow, stop, name="kubelet-logs")) as entries:
            async for entry in entries:
                yield entry.render(options.timestamps)

    def _follower(self, cid: str, options: LogOptions, stop: threading.Event):
        """A function making the follow iterator of the container's log; it ends when the
        container stops or `stop` is set (the client went away)."""
        from pkube.runtime import logs as logfile
        from pkube.runtime.runtime import NoSuchContainer

        def running() -> bool:
            if stop.is_set():
                return False
            try:
                return self.runtime.get(cid).running
            except NoSuchContainer:
                return False
        # Runtime.logs(follow=True) polls until the container stops, whoever listens:
        # a client that went away must end it sooner, hence its log file followed here.
        path = os.path.join(self.runtime.store.dir(cid), "container.log")
        return lambda: logfile.follow(path, running, tail=options.tail, since=options.since)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port ("::" listens on IPv4 too); raises OSError naming
    the address (e.g. already in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048,
                                    dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6())
    except OSError as exc:
        raise OSError(exc.errno, f"kubelet API on {host}:{port}: {exc.strerror or exc}") from None


async def _limited(body: AsyncIterator[bytes], limit: Optional[int]) -> AsyncIterator[bytes]:
    """`body`, cut after `limit` bytes (None: whole)."""
    async with contextlib.aclosing(body):
        async for chunk in body:
            if limit is not None:
                chunk = chunk[:limit]
                limit -= len(chunk)
            if chunk:
                yield chunk
            if limit == 0:
                return

