"""The cluster DNS server: UDP and TCP on the cluster DNS address, run inside each node's proxy.

Questions about the cluster domain are answered by ``proxy.dnsnames.ClusterNames`` from the
proxy's own informer caches; everything else is forwarded to the host's resolvers (UDP
questions over UDP, TCP over TCP, the next upstream tried after a timeout, SERVFAIL when none
answers). Encoded answers of our own names are cached, keyed by the question's bytes after the
message ID, so a repeated question costs one dict lookup; any change to a Service or an
EndpointSlice clears the cache (``invalidate``). A UDP answer longer than the client accepts
(512 bytes, or its EDNS size) goes out truncated with TC set, and the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Callable, Optional, Sequence

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSRecord

from pkube.proxy.dnsnames import Answer, ClusterNames

log = logging.getLogger(__name__)

CLASSIC_UDP_SIZE = 512
OUR_EDNS_SIZE = 1232
CACHE_ENTRIES = 10_000
FORWARD_TIMEOUT_SECONDS = 2.0
TCP_IDLE_SECONDS = 10.0
DNS_PORT = 53


def host_upstreams(resolv_conf: str = "/etc/resolv.conf", exclude: Sequence[str] = ()) -> list[tuple[str, int]]:
    """The host's nameservers (port 53), without ``exclude``; [] when the file is missing."""
    try:
        with open(resolv_conf) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    servers = [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]
    return [(server, DNS_PORT) for server in servers if server not in exclude]


class DnsServer:
    """Serves ``names`` on ``address``:``port`` (UDP and TCP) until ``stop``; at most
    ``cache_entries`` encoded answers are kept (0: none, every question is answered anew)."""

    def __init__(self, names: ClusterNames, address: str, port: int = DNS_PORT,
                 upstreams: Sequence[tuple[str, int]] = (), forward_timeout: float = FORWARD_TIMEOUT_SECONDS,
                 cache_entries: int = CACHE_ENTRIES):
        self.names = names
        self.cache_entries = cache_entries
        self.address, self.port = address, port
        self.upstreams = list(upstreams)
        self.forward_timeout = forward_timeout
        self._cache: dict[bytes, bytes] = {}
        self._udp: Optional[asyncio.DatagramTransport] = None
        self._tcp: Optional[asyncio.AbstractServer] = None
        self._pending: set[asyncio.Future] = set()

    async def start(self) -> None:
        """Bind both sockets (OSError when the address is not local or the port is taken)."""
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                           local_addr=(self.address, self.port))
        self._tcp = await asyncio.start_server(self._serve_tcp, self.address, self.port)
        log.info("cluster DNS on %s:%d (domain %s), forwarding to %s", self.address, self.port,
                 self.names.domain, ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "nobody")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._pending):
            task.cancel()

    def invalidate(self) -> None:
        """Forget every cached answer (a Service or EndpointSlice changed)."""
        self._cache.clear()

    # ---- one question

    def answer(self, data: bytes, limit: Optional[int]) -> Optional[bytes]:
        """The encoded answer to ``data`` when it is ours (None: forward it, or drop garbage —
        see ``is_garbage``). ``limit`` is the UDP size the answer must fit (None over TCP)."""
        hit = self._cache.get(data[2:])
        if hit is not None:
            return data[:2] + hit
        request = _parse(data)
        if request is None or not request.questions:
            return None
        answer = self.names.resolve(str(request.q.qname), request.q.qtype)
        if answer is None:
            return None
        packed = _reply(request, answer).pack()
        if len(packed) <= CLASSIC_UDP_SIZE and len(self._cache) < self.cache_entries:
            self._cache[data[2:]] = packed[2:]
        if limit is not None and len(packed) > max(limit, _udp_size(request)):
            return _truncated(request)
        return packed

    def on_datagram(self, data: bytes, addr, transport: asyncio.DatagramTransport) -> None:
        packed = self.answer(data, CLASSIC_UDP_SIZE)
        if packed is not None:
            transport.sendto(packed, addr)
        elif _parse(data) is not None:
            self._spawn(self._forward_udp(data, lambda reply: transport.sendto(reply, addr)))

    # ---- TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                data = await reader.readexactly(struct.unpack("!H", header)[0])
                packed = self.answer(data, None)
                if packed is None and _parse(data) is not None:
                    packed = await self._forward_tcp(data)
                if packed is None:
                    break
                writer.write(struct.pack("!H", len(packed)) + packed)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    # ---- forwarding

    async def _forward_udp(self, data: bytes, send: Callable[[bytes], None]) -> None:
        for host, port in self.upstreams:
            try:
                send(await asyncio.wait_for(_ask_udp(data, host, port), self.forward_timeout))
                return
            except (OSError, asyncio.TimeoutError) as e:
                log.debug("upstream %s:%d did not answer: %s", host, port, e)
        send(_servfail(data))

    async def _forward_tcp(self, data: bytes) -> bytes:
        for host, port in self.upstreams:
            try:
                return await asyncio.wait_for(_ask_tcp(data, host, port), self.forward_timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.debug("upstream %s:%d did not answer over TCP: %s", host, port, e)
        return _servfail(data)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.server.on_datagram(data, addr, self.transport)
        except Exception:  # noqa: BLE001 - one bad question must not stop the server
            log.exception("answering a DNS question from %s", addr)


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future):
        self.done = done

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _ask_udp(data: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _OneAnswer(done), remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await done
    finally:
        transport.close()


async def _ask_tcp(data: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()


# ---- messages

def _parse(data: bytes) -> Optional[DNSRecord]:
    """The question, or None for something that is not a DNS query (dropped, as CoreDNS does)."""
    try:
        request = DNSRecord.parse(data)
    except (DNSError, IndexError, ValueError, struct.error):
        return None
    return request if request.header.qr == 0 else None


def _udp_size(request: DNSRecord) -> int:
    """What the client accepts over UDP: its EDNS size, else 512."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(CLASSIC_UDP_SIZE, min(rr.rclass, OUR_EDNS_SIZE))
    return CLASSIC_UDP_SIZE


def _reply(request: DNSRecord, answer: Answer) -> DNSRecord:
    reply = request.reply(ra=1, aa=1)
    reply.header.rcode = answer.rcode
    for rr in answer.answers:
        reply.add_answer(rr)
    for rr in answer.authority:
        reply.add_auth(rr)
    for rr in answer.additional:
        reply.add_ar(rr)
    if any(rr.rtype == QTYPE.OPT for rr in request.ar):
        reply.add_ar(EDNS0(udp_len=OUR_EDNS_SIZE))
    return reply


def _truncated(request: DNSRecord) -> bytes:
    reply = request.reply(ra=1, aa=1)
    reply.header.tc = 1
    return reply.pack()


def _servfail(data: bytes) -> bytes:
    request = DNSRecord.parse(data)
    reply = request.reply(ra=1, aa=0)
    reply.header.rcode = RCODE.SERVFAIL
    return reply.pack()
