"""The WebSocket channel protocol of exec, attach and portForward (Kubernetes'
`channel.k8s.io` family), as pure functions: no socket here.

Every message carries one channel's bytes. Binary subprotocols (`v5.channel.k8s.io`,
`v4.channel.k8s.io`, `channel.k8s.io`) put the channel number in the first byte; the
base64 ones (`v5.base64.channel.k8s.io`, ...) send text: the channel as an ASCII digit,
then the data in base64.

exec/attach channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255, "close"
(its one data byte names the stream the client closed: 0 for stdin). On the error
channel v4 and v5 send one metav1 Status when the command ends (Success, or Failure with
reason NonZeroExitCode and the code as an ExitCode cause: kubectl's exit code); older
protocols send only an error's text.

portForward (`v4.channel.k8s.io`, `portforward.k8s.io`, ...): the i-th port of the
`ports` query has data channel 2i and error channel 2i+1; the first message the server
sends on each carries the port, 2 bytes little-endian.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V1 = "channel.k8s.io"
EXEC_PROTOCOLS = (V5, "v5.base64.channel.k8s.io", V4, "v4.base64.channel.k8s.io", V1, "base64.channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("portforward.k8s.io", V4, "v4.base64.channel.k8s.io", V1, "base64.channel.k8s.io")


class FrameError(ValueError):
    """A message that is not a valid frame of the negotiated protocol."""


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first protocol in the client's order that we support; "" when the client offered
    none (plain binary channels, as Kubernetes allows); None when nothing matches."""
    if not offered:
        return ""
    return next((p for p in offered if p in supported), None)


@dataclass(frozen=True)
class Channels:
    """The framing of one negotiated subprotocol."""

    protocol: str

    @property
    def base64(self) -> bool:
        return "base64" in self.protocol

    @property
    def version(self) -> int:
        """5, 4, or 1 for the unversioned protocols (and portforward.k8s.io)."""
        head = self.protocol.split(".", 1)[0]
        return int(head[1:]) if head[:1] == "v" and head[1:].isdigit() else 1

    @property
    def status_json(self) -> bool:
        """The error channel carries a metav1 Status (v4 and later)."""
        return self.version >= 4

    @property
    def has_close(self) -> bool:
        """The client can close stdin on channel CLOSE (v5)."""
        return self.version >= 5

    def encode(self, channel: int, data: bytes) -> bytes | str:
        """One message for `channel` carrying `data` (text for base64 protocols)."""
        if self.base64:
            return str(channel) + base64.b64encode(data).decode("ascii")
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes]:
        """(channel, data) of a client message; raises FrameError when it is empty or (in
        base64 protocols) not base64."""
        if not message:
            raise FrameError("empty message: no channel")
        if isinstance(message, str):
            if not message[0].isdigit():
                raise FrameError(f"text message with channel {message[0]!r}: must be a digit")
            try:
                return int(message[0]), base64.b64decode(message[1:], validate=True)
            except (binascii.Error, ValueError):
                raise FrameError("text message whose data is not base64") from None
        return message[0], bytes(message[1:])


def success_status() -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def exit_status(code: int) -> dict:
    """The error channel's Status for a command that exited with `code` (Success for 0)."""
    if code == 0:
        return success_status()
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> dict:
    """The error channel's Status for a command that could not run at all."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def error_payload(channels: Channels, status: dict) -> bytes | None:
    """What to write on the error channel for `status`: the Status JSON (v4+), else the
    message text of a failure; None when there is nothing to write (success before v4)."""
    if channels.status_json:
        return json.dumps(status).encode()
    if status.get("status") == "Success":
        return None
    return (status.get("message") or "error").encode()


def parse_resize(data: bytes) -> tuple[int, int]:
    """(rows, cols) from a resize message {"Width": cols, "Height": rows}; raises FrameError."""
    try:
        size = json.loads(data)
        rows, cols = int(size["Height"]), int(size["Width"])
    except (ValueError, TypeError, KeyError):
        raise FrameError(f"resize message {data[:100]!r}: want {{\"Width\": N, \"Height\": N}}") from None
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise FrameError(f"resize to {cols}x{rows}: out of range")
    return rows, cols


def query_flag(params, name: str, default: bool = False) -> bool:
    """A boolean query parameter as Kubernetes reads it: absent -> `default`; present ->
    true unless its value is false/0 (so `?follow` and `?follow=1` are true)."""
    if name not in params:
        return default
    return params[name].strip().lower() not in ("false", "0", "f", "no", "n")


def parse_ports(values: list[str]) -> list[int]:
    """The ports of portForward's `ports` query (repeated or comma-separated); raises
    ValueError with a readable message when missing or not in 1-65535."""
    ports = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit() or not 1 <= int(item) <= 65535:
                raise ValueError(f"invalid port {item!r}: must be a number in 1-65535")
            ports.append(int(item))
    if not ports:
        raise ValueError("query parameter \"ports\" is required: the ports to forward")
    return ports


def port_prefix(port: int) -> bytes:
    """The first bytes the server sends on a port's data and error channels."""
    return port.to_bytes(2, "little")


def port_channels(index: int) -> tuple[int, int]:
    """(data channel, error channel) of the `index`-th forwarded port."""
    return 2 * index, 2 * index + 1
