"""portForward as kubectl speaks it: SPDY/3.1 streams tunnelled through a WebSocket
(kubelet.spdy for the framing).

For each connection to a forwarded local port, kubectl opens two streams with the headers
`streamtype` ("error" or "data"), `port` and `requestid` (the pair's id). Once both are
there, the kubelet connects to the port in the pod's network namespace and relays: what
the data stream brings goes to the port (its FIN half-closes the connection), what the
port sends goes back on the data stream; when the port closes, both streams are
finished. A failure to connect is written on the error stream, as Kubernetes does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from starlette.websockets import WebSocket, WebSocketDisconnect

from pkube.kubelet import spdy
from pkube.kubelet.portforward import READ_SIZE, ForwardError, connect_in_netns

log = logging.getLogger(__name__)

SPDY_PROTOCOL = "SPDY/3.1+portforward.k8s.io"


@dataclass
class StreamPair:
    """The two streams of one forwarded connection, and what arrived on its data stream
    before (or while) the connection is made: bytes, then None for the FIN."""

    request_id: str
    port: int = 0
    error_id: Optional[int] = None
    data_id: Optional[int] = None
    inbound: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: Optional[asyncio.Task] = None

    @property
    def complete(self) -> bool:
        return self.error_id is not None and self.data_id is not None


def pair_key(headers: dict, stream_id: int) -> str:
    """The pair a stream belongs to: its requestid header, or for clients without one
    (Kubernetes' fallback) the error stream's id, which the data stream's is 2 after."""
    if headers.get("requestid"):
        return headers["requestid"]
    return str(stream_id if headers.get("streamtype") == "error" else stream_id - 2)


def stream_port(headers: dict) -> int:
    """The `port` header; raises ValueError unless it is in 1-65535."""
    text = headers.get("port", "")
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid port header {text!r}")
    return int(text)


class SpdyForwarding:
    """One kubectl port-forward session on one WebSocket."""

    def __init__(self, websocket: WebSocket, netns: str, pod: str):
        self.websocket, self.netns, self.pod = websocket, netns, pod
        self.codec = spdy.Codec()
        self.pairs: dict[str, StreamPair] = {}
        self.data_streams: dict[int, StreamPair] = {}
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve streams until the client goes away (or breaks the protocol)."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") if message.get("bytes") is not None else (message.get("text") or "").encode()
                for frame in self.codec.feed(data):
                    if not await self._on_frame(frame):
                        return
        except spdy.ProtocolError as exc:
            log.info("port forward to %s: %s", self.pod, exc)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._send(lambda: self.codec.goaway(0, spdy.PROTOCOL_ERROR))
        except WebSocketDisconnect:
            return
        finally:
            await self._stop_all()

    async def _on_frame(self, frame: spdy.Frame) -> bool:
        """Act on one frame; False when the session is over (GOAWAY)."""
        if frame.kind == spdy.SYN_STREAM:
            await self._on_stream(frame)
        elif frame.kind == "data":
            pair = self.data_streams.get(frame.stream_id)
            if pair is not None:
                if frame.data:
                    pair.inbound.put_nowait(frame.data)
                if frame.fin:
                    pair.inbound.put_nowait(None)
        elif frame.kind == spdy.RST_STREAM:
            pair = self.data_streams.get(frame.stream_id)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif frame.kind == spdy.PING:
            await self._send(lambda: self.codec.ping(frame.ping_id))
        elif frame.kind == spdy.GOAWAY:
            return False
        return True

    async def _on_stream(self, frame: spdy.Frame) -> None:
        """Accept a new stream (the client waits for the reply) and pair it."""
        headers, stream_id = frame.headers, frame.stream_id
        kind = headers.get("streamtype")
        try:
            port = stream_port(headers)
            if kind not in ("error", "data"):
                raise ValueError(f"invalid stream type {kind!r}")
        except ValueError as exc:
            log.info("port forward to %s: stream %d refused: %s", self.pod, stream_id, exc)
            await self._send(lambda: self.codec.rst_stream(stream_id, spdy.REFUSED_STREAM))
            return
        await self._send(lambda: self.codec.syn_reply(stream_id))
        pair = self.pairs.setdefault(pair_key(headers, stream_id), StreamPair(pair_key(headers, stream_id), port))
        if kind == "error":
            pair.error_id = stream_id
        else:
            pair.data_id = stream_id
            self.data_streams[stream_id] = pair
        if pair.complete and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair))

    async def _forward(self, pair: StreamPair) -> None:
        """Connect to the pair's port and relay until the port closes (or the client
        resets the stream: the task is cancelled)."""
        try:
            await self._relay(pair)
            await self._finish(pair)
        finally:
            self.pairs.pop(pair.request_id, None)
            self.data_streams.pop(pair.data_id, None)

    async def _relay(self, pair: StreamPair) -> None:
        try:
            sock = await asyncio.to_thread(connect_in_netns, self.netns, pair.port)
            reader, writer = await asyncio.open_connection(sock=sock)
        except ForwardError as exc:
            message = f"error forwarding port {pair.port} to pod {self.pod}: {exc}"
            log.info("%s", message)
            await self._send(lambda: self.codec.data(pair.error_id, message.encode()))
            return
        inbound = asyncio.create_task(self._to_port(pair, writer))
        try:
            while chunk := await reader.read(READ_SIZE):
                await self._send(lambda: self.codec.data(pair.data_id, chunk))
        except ConnectionError:
            pass
        finally:
            inbound.cancel()
            writer.close()

    async def _to_port(self, pair: StreamPair, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while (payload := await pair.inbound.get()) is not None:
                writer.write(payload)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    async def _finish(self, pair: StreamPair) -> None:
        """FIN on both streams of a pair that is done."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._send(lambda: self.codec.data(pair.data_id, fin=True))
            await self._send(lambda: self.codec.data(pair.error_id, fin=True))

    async def _send(self, make: Callable[[], bytes]) -> None:
        """Make a frame and send it, one at a time: header blocks share one compression
        context, so frames must leave in the order they were made."""
        async with self._send_lock:
            await self.websocket.send_bytes(make())

    async def _stop_all(self) -> None:
        tasks = [p.task for p in self.pairs.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.close(code=1000)
