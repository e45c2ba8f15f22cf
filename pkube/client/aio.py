"""``AsyncApiClient``: the REST client's verbs for asyncio components.

Short requests go through pkube/client/http1.py (a lean keep-alive HTTP/1.1 pool),
watches through aiohttp. Kept apart from pkube/client/rest.py so that the blocking
client (pkubectl) never pays for importing aiohttp and asyncio.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import AsyncIterator, Optional

import aiohttp

from pkube.api.jsonvalue import dumps, loads
from pkube.client.errors import error_from_response, unavailable
from pkube.client.http1 import Http1Pool, TransportError
from pkube.client.kubeconfig import ClientConfig
from pkube.client.rest import (CONNECT_TIMEOUT, Request, Verbs, default_headers, merge_page,
                         parse_watch_line, ssl_context)


class AsyncApiClient(Verbs):
    """Asyncio client (short requests on pkube/client/http1.py, watches on aiohttp); the same
    verbs as ApiClient, awaited. Close with ``aclose()``.

    aiohttp, not httpx: measured here, httpx spends 2.3-2.7 ms of client CPU per
    request and aiohttp 0.3-0.4 ms, and the scheduler and hollow nodes send
    hundreds of requests a second on a 2-core machine. The session is made on
    first use, on the running loop, so a client may be built outside one (it is
    then bound to the loop that first uses it). ``timeout`` bounds each request
    (not watches, which the server ends). ``max_connections`` caps open
    connections (each watch holds one); ``max_idle`` is kept for callers of the
    httpx-era signature and ignored: aiohttp keeps every idle connection alive
    for ``KEEPALIVE_SECONDS``.
    """

    KEEPALIVE_SECONDS = 15.0

    def __init__(self, config: ClientConfig, timeout: float = 30.0, max_connections: int = 64,
                 max_idle: int = 16):
        super().__init__(config)
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT)
        self.max_connections = max_connections
        self.headers = default_headers(config)
        self._ssl = ssl_context(config) if config.server.startswith("https:") else True
        self._base = config.server.rstrip("/")
        self._session: Optional[aiohttp.ClientSession] = None
        self._request_timeout = timeout
        self._connections: Optional[Http1Pool] = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def aclose(self) -> None:
        if self._connections is not None:
            self._connections.close()
            self._connections = None
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self._ssl,
                                             keepalive_timeout=self.KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(headers=self.headers, connector=connector,
                                                  timeout=self.timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _request_args(self, req: Request) -> dict:
        args = dict(method=req.method, url=self._base + req.path,
                    params={k: str(v) for k, v in req.params.items()})
        if req.body is not None:
            args["data"] = dumps(req.body)
            args["headers"] = {"Content-Type": req.content_type}
        return args

    def _pool(self) -> Http1Pool:
        if self._connections is None:
            self._connections = Http1Pool(self._base, self.headers, _strict_or_unverified(self.config),
                                          CONNECT_TIMEOUT, self.max_connections)
        return self._connections

    async def call(self, req: Request) -> dict:
        """Send one request (on the lean HTTP/1.1 pool, pkube/client/http1.py); the decoded answer,
        or raise ApiError (Unavailable: not sent or no answer within the timeout)."""
        body = dumps(req.body) if req.body is not None else None
        params = {k: str(v) for k, v in req.params.items()}
        try:
            async with asyncio.timeout(self._request_timeout):
                status, body = await self._pool().request(req.method, req.path, params, body, req.content_type)
        except (TransportError, TimeoutError) as err:
            raise unavailable(self._base + req.path, err) from None
        if status >= 400:
            raise error_from_response(status, body)
        return loads(body) if body else {}

    async def get(self, resource, name, namespace=None, subresource=None) -> dict:
        return await self.call(self.get_request(resource, name, namespace, subresource))

    async def list(self, resource, namespace=None, label_selector=None, field_selector=None,
                   limit=None, continue_=None, resource_version=None) -> dict:
        return await self.call(self.list_request(resource, namespace, label_selector, field_selector,
                                                 limit, continue_, resource_version))

    async def list_all(self, resource, namespace=None, label_selector=None, field_selector=None,
                       page_size: int = 500) -> dict:
        """The whole list, paged with limit/continue; the last page's metadata (revision) kept."""
        merged, token = None, None
        while True:
            page = await self.list(resource, namespace, label_selector, field_selector,
                                   page_size, token)
            merged = merge_page(merged, page)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return merged

    async def create(self, resource, obj, namespace=None) -> dict:
        return await self.call(self.create_request(resource, obj, namespace))

    async def create_subresource(self, resource, name, subresource, obj, namespace=None) -> dict:
        """POST ``obj`` to ``subresource`` of object ``name`` (serviceaccounts/NAME/token,
        pods/NAME/eviction, ...); the answer. Errors raise as for ``create``."""
        return await self.call(self.create_request(resource, obj, namespace, subresource, name))

    async def replace(self, resource, obj, namespace=None, subresource=None) -> dict:
        return await self.call(self.replace_request(resource, obj, namespace, subresource))

    async def patch(self, resource, name, patch, namespace=None, patch_type="merge",
                    subresource=None) -> dict:
        return await self.call(self.patch_request(resource, name, patch, namespace, patch_type, subresource))

    async def delete(self, resource, name, namespace=None, propagation_policy=None,
                     grace_period_seconds=None, preconditions=None) -> dict:
        return await self.call(self.delete_request(resource, name, namespace, propagation_policy,
                                                   grace_period_seconds, preconditions))

    async def bind(self, pod: dict, node: str) -> dict:
        """Bind ``pod`` to ``node`` through pods/{name}/binding."""
        return await self.call(self.bind_request(pod, node))

    async def watch(self, resource, namespace=None, resource_version=None, label_selector=None,
                    field_selector=None, timeout_seconds=None, allow_bookmarks=True
                    ) -> AsyncIterator[tuple[str, dict]]:
        """Yield (type, object) until the server ends the stream; raises Gone on 410.

        No read timeout (a watch idles until the server ends it); a broken stream
        raises Unavailable.
        """
        req = self.watch_request(resource, namespace, resource_version, label_selector, field_selector,
                                 timeout_seconds, allow_bookmarks)
        no_read_timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        try:
            async with self._http().request(**self._request_args(req), timeout=no_read_timeout) as response:
                if response.status >= 400:
                    raise error_from_response(response.status, await response.read())
                async for line in _lines(response.content):
                    event = parse_watch_line(line)
                    if event:
                        yield event
        except (aiohttp.ClientError, TimeoutError) as err:
            raise unavailable(self._base + req.path, err) from None


def _strict_or_unverified(config: ClientConfig) -> Optional[ssl.SSLContext]:
    """The SSLContext for an https server (one that verifies nothing when the config says
    insecure), None for http."""
    if not config.server.startswith("https:"):
        return None
    ctx = ssl_context(config)
    if ctx is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a byte stream, however long (aiohttp's own line reader stops at 64 KiB)."""
    pending = b""
    async for chunk in stream.iter_any():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending.strip():
        yield pending
