"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for load generation.

httpx spends more CPU per request than the apiserver does per create on this
2-core machine, so a benchmark driving the apiserver through httpx measures the
client. This client does only what the benchmarks need: one request at a time
per connection, Content-Length or chunked responses, TLS when given an SSLContext.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Optional


class HttpError(RuntimeError):
    """A response with an unexpected status."""


class Connection:
    """One keep-alive connection to ``host:port``; ``request()`` is not re-entrant."""

    def __init__(self, host: str, port: int, tls: Optional[ssl.SSLContext] = None):
        self.host, self.port, self.tls = host, port, tls
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def __aenter__(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24, ssl=self.tls,
                                                                 server_hostname=self.host if self.tls else None)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def request(self, method: str, path: str, body: Optional[dict] = None,
                      expect: int = 200, content_type: str = "application/json") -> bytes:
        """Send one request; return the body, raise HttpError on another status."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: application/json\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n")
        self.writer.write(head.encode() + data)
        status, headers = await self._read_head()
        payload = await self._read_body(headers)
        if status != expect:
            raise HttpError(f"{method} {path}: {status} {payload[:200]!r}")
        return payload

    async def _read_head(self) -> tuple[int, dict]:
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                return status, headers
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()

    async def _read_body(self, headers: dict) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])
