"""exec and attach over WebSocket: a runtime Attachment (the shim's socket) relayed to a
client speaking the channel protocol of kubelet.streams.

The handshake is completed first, then the container is looked up and the command
started; anything that goes wrong from there is reported on the error channel as a
Status, so that kubectl (through the apiserver, which relays frames untouched) prints a
readable message rather than a refused upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from pkube.kubelet import streams
from pkube.kubelet.lookup import find_container
from pkube.kubelet.streams import CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT, Channels, FrameError
from pkube.kubelet.threads import iterate_in_thread

log = logging.getLogger(__name__)

PROTOCOL_ERROR = 1002
SHIM_STDERR = 2


@dataclass(frozen=True)
class StreamOptions:
    """Which streams the client wants (the query's stdin, stdout, stderr, tty)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, params) -> "StreamOptions":
        """Kubernetes' defaults: stdout and stderr on, stdin and tty off; with a tty there
        is no separate stderr. Raises ValueError when no stream is wanted."""
        tty = streams.query_flag(params, "tty")
        options = cls(stdin=streams.query_flag(params, "stdin"), stdout=streams.query_flag(params, "stdout", True),
                      stderr=streams.query_flag(params, "stderr", True) and not tty, tty=tty)
        if not (options.stdin or options.stdout or options.stderr):
            raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
        return options


class SessionError(Exception):
    """The session cannot start; `status` is the Status to send on the error channel."""

    def __init__(self, status: dict):
        super().__init__(status.get("message"))
        self.status = status


def not_found(message: str) -> SessionError:
    return SessionError(streams.failure_status(message, "NotFound", 404))


def bad_request(message: str) -> SessionError:
    return SessionError(streams.failure_status(message, "BadRequest", 400))


async def serve(websocket: WebSocket, runtime, attach: bool) -> None:
    """The /exec and /attach WebSocket endpoint (path: namespace, pod, container)."""
    protocol = streams.negotiate(list(websocket.scope.get("subprotocols") or []), streams.EXEC_PROTOCOLS)
    if protocol is None:
        await websocket.close(code=PROTOCOL_ERROR)   # before accept: the handshake fails with 403
        return
    channels = Channels(protocol)
    await websocket.accept(subprotocol=protocol or None)
    try:
        options = _options(websocket.query_params, attach)
        attachment = await _start(websocket, runtime, options, attach)
    except SessionError as exc:
        await _finish(websocket, channels, exc.status)
        return
    except Exception as exc:  # noqa: BLE001 - the catch-all of this endpoint: report, log
        log.exception("%s failed", websocket.url.path)
        await _finish(websocket, channels, streams.failure_status(f"internal error: {exc}"))
        return
    status = await Session(websocket, channels, attachment, options, attach).run()
    if status is not None:
        await _finish(websocket, channels, status)


def _options(params, attach: bool) -> StreamOptions:
    try:
        options = StreamOptions.from_query(params)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    if not attach and not params.getlist("command"):
        raise bad_request("you must specify a command to run: the query parameter \"command\"")
    return options


async def _start(websocket: WebSocket, runtime, options: StreamOptions, attach: bool):
    """The runtime Attachment of the started command (exec) or of the container (attach)."""
    from pkube.runtime.runtime import ContainerError
    from pkube.runtime.process import StartError

    ns, pod, name = (websocket.path_params[k] for k in ("namespace", "pod", "container"))
    record = await asyncio.to_thread(find_container, runtime, ns, pod, name)
    if record is None:
        raise not_found(f"container {name!r} not found in pod {ns}/{pod}")
    if not record.running:
        raise bad_request(f"container {name} in pod {ns}/{pod} is not running")
    try:
        if attach:
            return await asyncio.to_thread(runtime.attach, record.id, "a" if options.stdin else "o")
        command = websocket.query_params.getlist("command")
        started = await asyncio.to_thread(runtime.exec, record.id, command, tty=options.tty, interactive=True)
        return started.attachment
    except StartError as exc:   # e.g. executable file not found: exit code 126/127 in Kubernetes
        raise SessionError(streams.failure_status(str(exc), "InternalError", 500)) from None
    except (ContainerError, OSError) as exc:
        raise bad_request(str(exc)) from None


async def _finish(websocket: WebSocket, channels: Channels, status: dict) -> None:
    """Write `status` on the error channel and close; a client already gone is fine."""
    payload = streams.error_payload(channels, status)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        if payload is not None:
            await _send(websocket, channels.encode(ERROR, payload))
        await websocket.close(code=1000)


async def _send(websocket: WebSocket, message: bytes | str) -> None:
    if isinstance(message, str):
        await websocket.send_text(message)
    else:
        await websocket.send_bytes(message)


class Session:
    """One running exec or attach: output frames to the client, its stdin, resizes and
    close to the attachment."""

    def __init__(self, websocket: WebSocket, channels: Channels, attachment, options: StreamOptions,
                 attach: bool):
        self.websocket, self.channels, self.attachment = websocket, channels, attachment
        self.options, self.attach = options, attach

    async def run(self) -> dict | None:
        """Relay until the command ends (its Status, to send) or the client goes away
        (None). The attachment is closed either way."""
        if not self.options.stdin:
            await asyncio.to_thread(self.attachment.close_stdin)
        output = asyncio.create_task(self._output())
        inputs = asyncio.create_task(self._input())
        try:
            await asyncio.wait({output, inputs}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not output.done():
                self._wake_reader()
            for task in (output, inputs):
                task.cancel()
            results = await asyncio.gather(output, inputs, return_exceptions=True)
            await asyncio.to_thread(self.attachment.close)
        status = results[0]
        return status if isinstance(status, dict) else None

    async def _output(self) -> dict:
        """Copy output frames until the end; the Status of how it ended."""
        stop = threading.Event()
        async with contextlib.aclosing(iterate_in_thread(self.attachment.frames, stop, name="kubelet-exec")) as frames:
            async for stream, data in frames:
                channel = STDERR if stream == SHIM_STDERR and not self.options.tty else STDOUT
                if (self.options.stderr if channel == STDERR else self.options.stdout) and data:
                    await _send(self.websocket, self.channels.encode(channel, data))
        code = self.attachment.exit_code
        if self.attach or code is None:
            return streams.success_status() if self.attach else streams.failure_status(
                "the command's supervisor went away without an exit code")
        return streams.exit_status(code)

    async def _input(self) -> None:
        """Apply client messages until the client closes."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            try:
                channel, payload = self.channels.decode(data)
                await self._apply(channel, payload)
            except FrameError as exc:
                log.debug("%s: ignored a message: %s", self.websocket.url.path, exc)

    async def _apply(self, channel: int, payload: bytes) -> None:
        try:
            if channel == STDIN and self.options.stdin and payload:
                await asyncio.to_thread(self.attachment.send, payload)
            elif channel == RESIZE:
                rows, cols = streams.parse_resize(payload)
                await asyncio.to_thread(self.attachment.resize, rows, cols)
            elif channel == CLOSE and self.channels.has_close and payload[:1] == bytes((STDIN,)):
                await asyncio.to_thread(self.attachment.close_stdin)
        except OSError:   # the process is gone: its output pump reports how it ended
            pass

    def _wake_reader(self) -> None:
        """Make the thread blocked reading the shim's socket return."""
        with contextlib.suppress(OSError):
            self.attachment.sock.shutdown(socket.SHUT_RDWR)


def spdy_refused() -> dict:
    """The Status for a non-WebSocket (SPDY) exec, attach or portForward request."""
    return streams.failure_status(
        "this kubelet does not support SPDY: use a WebSocket client (kubectl 1.30 or later)",
        "BadRequest", 400)


def status_body(status: dict) -> bytes:
    return json.dumps(status).encode()
