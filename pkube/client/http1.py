"""A lean HTTP/1.1 keep-alive client for the apiserver's short requests.

aiohttp costs 0.25-0.28 ms of client CPU per request here; the scheduler's
bindings, the hollow nodes' status writes and the controllers' writes are
hundreds a second on a 2-core machine that also runs the apiserver. This
client speaks just what those requests need: one request at a time per
connection (no pipelining), bodies with Content-Length, answers parsed by
httptools (chunked or not), kept-alive connections reused. About 0.08 ms per
request. Watches (long streams) stay on aiohttp.

``Http1Pool.request`` raises ``TransportError`` when the request could not be
sent or no complete answer came. A kept-alive connection that turns out to be
closed (the server closes idle connections when it wants) is replaced by a new
one and the request sent again only when that cannot do a write twice, Go's
net/http rule: the connection was already closed before any byte of the
request was written, or the method is idempotent (GET, HEAD, OPTIONS, TRACE)
and no byte of the answer had come. A POST, PUT, PATCH or DELETE lost on a
connection that died after it was written is the caller's to retry: the server
may have carried it out.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from typing import Callable, Optional

import httptools

IDLE_SECONDS = 4.0  # uvicorn closes connections idle for 5 s
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


class TransportError(Exception):
    """The request was not sent, or no complete answer arrived."""


class NothingWritten(TransportError):
    """The connection was closed before any byte of the request was written to it."""


class _Connection(asyncio.Protocol):
    """One connection; ``exchange`` sends a request and waits for its answer."""

    def __init__(self, on_lost: Callable[["_Connection"], None] = lambda conn: None):
        self.transport: Optional[asyncio.Transport] = None
        self.on_lost = on_lost
        self.parser: Optional[httptools.HttpResponseParser] = httptools.HttpResponseParser(self)
        self.answer: Optional[asyncio.Future] = None
        self.chunks: list[bytes] = []
        self.received = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(TransportError(f"bad HTTP answer: {err}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(TransportError(f"connection closed{': ' + str(exc) if exc else ''}"))
        self.on_lost(self)
        # The parser calls back into this object and a TLS transport holds it: without
        # these cycles the connection and its buffers are freed now, not at the next
        # full collection (with the components' GC policy, minutes away; issue 12).
        self.transport = self.parser = None

    # -- httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status, body = self.parser.get_status_code(), b"".join(self.chunks)
        self.chunks = []
        if not self.parser.should_keep_alive():
            self.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((status, body))

    # -- use
    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``, wait for its answer; NothingWritten when the connection was
        closed already (the request did not leave)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise NothingWritten("connection closed before the request was written")
        self.answer = asyncio.get_running_loop().create_future()
        self.received = False
        self.transport.write(request)
        try:
            return await self.answer
        finally:
            self.answer = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(error)


class Http1Pool:
    """Kept-alive connections to one server (``http://`` or ``https://`` URL); at most
    ``max_connections`` requests in flight (the rest wait). The pool holds no connection
    that is closed (by either side) or idle for ``IDLE_SECONDS``: a TLS connection holds
    ~300 KiB (asyncio's 256 KiB read buffer), and the newest idle one is reused first, so
    the ones a burst left behind would otherwise stay until the pool closes."""

    def __init__(self, base_url: str, headers: dict, ssl_context: Optional[ssl.SSLContext],
                 connect_timeout: float, max_connections: int = 64):
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl_context if url.scheme == "https" else None
        self.connect_timeout, self.max_idle = connect_timeout, max_connections
        self.slots = asyncio.Semaphore(max_connections)  # requests in flight, each on its own connection
        host_header = url.netloc.rsplit("@", 1)[-1]
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host_header, **headers}.items()).encode()
        self.idle: list[_Connection] = []

    async def request(self, method: str, path: str, params: dict, body: Optional[bytes],
                      content_type: str) -> tuple[int, bytes]:
        """Send one request (waiting for a free slot first); (status, body). Raises TransportError."""
        async with self.slots:
            return await self._request(method, path, params, body, content_type)

    async def _request(self, method: str, path: str, params: dict, body: Optional[bytes],
                       content_type: str) -> tuple[int, bytes]:
        query = urllib.parse.urlencode(params)
        target = f"{urllib.parse.quote(path)}{'?' + query if query else ''}"
        message = self._message(method, target, body, content_type)
        conn = self._take_idle()
        if conn is not None:
            try:
                return await self._exchange(conn, message)
            except NothingWritten:
                pass                  # it never left: safe to send on a new connection
            except TransportError:
                if conn.received or method not in IDEMPOTENT_METHODS:
                    raise             # the server may have acted on it: not ours to replay
        return await self._exchange(await self._connect(), message)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()

    def _message(self, method: str, target: str, body: Optional[bytes], content_type: str) -> bytes:
        head = b"%s %s HTTP/1.1\r\n%s" % (method.encode(), target.encode(), self.head)
        if body is None:
            return head + (b"Content-Length: 0\r\n\r\n" if method in ("POST", "PUT", "PATCH") else b"\r\n")
        return head + b"Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (content_type.encode(), len(body), body)

    async def _exchange(self, conn: _Connection, message: bytes) -> tuple[int, bytes]:
        try:
            status, body = await conn.exchange(message)
        except BaseException:
            conn.close()  # an answer may still be on its way: the connection cannot be reused
            raise
        self._give_back(conn)
        return status, body

    def _take_idle(self) -> Optional[_Connection]:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        now = time.monotonic()
        while self.idle and now - self.idle[0].idle_since >= IDLE_SECONDS:
            self.idle.pop(0).close()       # the oldest first: left idle by a burst
        if conn.closed or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        """A connection closed: out of the idle list (with its transport and buffers)."""
        if conn in self.idle:
            self.idle.remove(conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._lost), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None)
        except (OSError, TimeoutError, ssl.SSLError) as err:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {err}") from None
        return conn
