"""portForward over WebSocket: TCP connections to ports inside the pod's network
namespace, relayed either on the channels of kubelet.streams (data 2i, error 2i+1 for
the i-th port of the `ports` query), or, for kubectl (subprotocol
SPDY/3.1+portforward.k8s.io), on the SPDY streams of kubelet.spdyforward.

The connection is made by a thread that joins the pod's network namespace only for
that (runtime.netlink.in_netns): a socket stays in the namespace it was created in, so
the relay then runs on the event loop like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from pkube.kubelet import streams
from pkube.kubelet.lookup import pod_sandbox
from pkube.kubelet.streams import Channels, FrameError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_SIZE = 32768
LOOPBACKS = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))


class ForwardError(Exception):
    """A port cannot be reached in the pod; the message is for the client."""


def connect_in_netns(netns: str, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connected, non-blocking TCP socket to `port` on the loopback of the network
    namespace at `netns` (IPv4, then IPv6). Blocks; raises ForwardError."""
    from pkube.runtime.netlink import NetlinkError, in_netns

    def connect() -> socket.socket:
        errors = []
        for family, address in LOOPBACKS:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect((address, port))
                sock.setblocking(False)
                return sock
            except OSError as exc:
                sock.close()
                errors.append(f"{address}: {exc.strerror or exc}")
        raise ForwardError(f"cannot connect to port {port} in the pod: {'; '.join(errors)}")
    try:
        return in_netns(netns, connect, f"connect to port {port}")
    except NetlinkError as exc:
        raise ForwardError(str(exc)) from None


async def serve(websocket: WebSocket, runtime) -> None:
    """The /portForward/{namespace}/{pod} WebSocket endpoint. Bad requests and pods not
    running here are refused before the upgrade (400, 404) with a readable body."""
    from pkube.kubelet.spdyforward import SPDY_PROTOCOL, SpdyForwarding

    offered = list(websocket.scope.get("subprotocols") or [])
    protocol = streams.negotiate(offered, (SPDY_PROTOCOL, *streams.PORT_FORWARD_PROTOCOLS))
    ns, pod = websocket.path_params["namespace"], websocket.path_params["pod"]
    try:
        if protocol is None:
            raise ValueError("no supported subprotocol offered: use v4.channel.k8s.io, portforward.k8s.io "
                             f"or {SPDY_PROTOCOL}")
        ports = [] if protocol == SPDY_PROTOCOL else streams.parse_ports(websocket.query_params.getlist("ports"))
    except ValueError as exc:
        await websocket.send_denial_response(PlainTextResponse(str(exc), 400))
        return
    sandbox = await asyncio.to_thread(pod_sandbox, runtime, ns, pod)
    if sandbox is None or not sandbox.running:
        await websocket.send_denial_response(PlainTextResponse(f"pod {ns}/{pod} is not running on this node", 404))
        return
    await websocket.accept(subprotocol=protocol or None)
    netns = f"/proc/{sandbox.pid}/ns/net"
    if protocol == SPDY_PROTOCOL:
        await SpdyForwarding(websocket, netns, f"{ns}/{pod}").run()
    else:
        await Forwarding(websocket, Channels(protocol), ports, netns).run()


class Forwarding:
    """The ports of one portForward WebSocket."""

    def __init__(self, websocket: WebSocket, channels: Channels, ports: list[int], netns: str):
        self.websocket, self.channels, self.ports, self.netns = websocket, channels, ports, netns
        # data channel -> its connection's writer (None once the connection failed)
        self.writers: dict[int, asyncio.Future] = {}

    async def run(self) -> None:
        """Relay until every port's connection ended or the client went away."""
        loop = asyncio.get_running_loop()
        for index, port in enumerate(self.ports):
            self.writers[streams.port_channels(index)[0]] = loop.create_future()
            for channel in streams.port_channels(index):
                await self._send(channel, streams.port_prefix(port))
        relays = [asyncio.create_task(self._forward(i, port)) for i, port in enumerate(self.ports)]
        inputs = asyncio.create_task(self._input())
        try:
            await asyncio.wait([asyncio.gather(*relays, return_exceptions=True), inputs],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*relays, inputs):
                task.cancel()
            await asyncio.gather(*relays, inputs, return_exceptions=True)
            for connected in self.writers.values():
                if connected.done() and connected.result() is not None:
                    connected.result().close()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(code=1000)

    async def _forward(self, index: int, port: int) -> None:
        """Connect to `port` and copy what it sends to its data channel; a failure goes to
        its error channel."""
        data_channel, error_channel = streams.port_channels(index)
        connected = self.writers[data_channel]
        try:
            sock = await asyncio.to_thread(connect_in_netns, self.netns, port)
            reader, writer = await asyncio.open_connection(sock=sock)
        except ForwardError as exc:
            connected.set_result(None)
            log.info("port forward to %s: %s", self.netns, exc)
            await self._send(error_channel, str(exc).encode())
            return
        except BaseException:   # cancelled while connecting
            connected.set_result(None)
            raise
        connected.set_result(writer)
        while chunk := await reader.read(READ_SIZE):
            await self._send(data_channel, chunk)

    async def _input(self) -> None:
        """Client data to the port connections, until the client closes."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            try:
                channel, payload = self.channels.decode(data)
            except FrameError as exc:
                log.debug("port forward: ignored a message: %s", exc)
                continue
            connected = self.writers.get(channel)
            writer = await connected if connected is not None and payload else None
            if writer is not None:
                writer.write(payload)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

    async def _send(self, channel: int, data: bytes) -> None:
        message = self.channels.encode(channel, data)
        if isinstance(message, str):
            await self.websocket.send_text(message)
        else:
            await self.websocket.send_bytes(message)
