"""``pkubectl logs`` (pods/log as text), ``exec`` and ``attach`` (pods/exec, pods/attach over
WebSocket, v5.channel.k8s.io); ``connect`` is also the transport of port-forward and cp.

Both go through the apiserver, which proxies to the kubelet. The exec
protocol: every binary frame starts with a channel byte — 0 stdin, 1 stdout,
2 stderr, 3 error (a Status JSON when the command ends), 4 resize, 255 close
(v5: the first byte after 255 names the stream being closed).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Optional
from urllib.parse import urlencode

from pkube.kubectl.errors import CliError

EXEC_PROTOCOL = "v5.channel.k8s.io"
FALLBACK_PROTOCOLS = ("v4.channel.k8s.io",)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STDIN_CHUNK = 32768


def log_params(container: Optional[str], follow: bool, previous: bool, tail: Optional[int],
               timestamps: bool) -> dict:
    """The pods/log query parameters kubectl sends for these flags."""
    params = {}
    if container:
        params["container"] = container
    if follow:
        params["follow"] = "true"
    if previous:
        params["previous"] = "true"
    if tail is not None and tail >= 0:
        params["tailLines"] = str(tail)
    if timestamps:
        params["timestamps"] = "true"
    return params


def stream_logs(session, path: str, params: dict, out) -> None:
    """Copy the log stream to ``out`` as it arrives (until the server ends it)."""
    import httpx
    from pkube.client.errors import error_from_response, unavailable

    try:
        with session.client.http.stream("GET", path, params=params, headers={"Accept": "*/*"},
                                        timeout=httpx.Timeout(None, connect=10.0)) as response:
            if response.status_code >= 400:
                raise error_from_response(response.status_code, response.read())
            for chunk in response.iter_bytes():
                out.write(chunk.decode("utf-8", "replace"))
                out.flush()
    except httpx.TransportError as err:
        raise unavailable(session.config.server + path, err) from None


def exec_query(command: list[str], container: Optional[str], stdin: bool, tty: bool) -> str:
    """The pods/exec query string (one ``command`` parameter per argument)."""
    params = [("command", arg) for arg in command]
    if container:
        params.append(("container", container))
    params += [("stdout", "true"), ("stderr", "false" if tty else "true")]
    if stdin:
        params.append(("stdin", "true"))
    if tty:
        params.append(("tty", "true"))
    return urlencode(params)


def exit_code_of(status: dict) -> int:
    """The remote command's exit code from the error channel's Status (0 on Success)."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", "1"))
            except ValueError:
                return 1
    raise CliError(status.get("message") or "command failed")


def ws_url(session, path: str, query: str) -> str:
    return session.config.server.replace("https://", "wss://").replace("http://", "ws://") + path + "?" + query


def connect(session, path: str, query: str, protocols: tuple[str, ...]):
    """A WebSocket to a streaming subresource (exec, attach, portforward).

    A refused upgrade whose body is a Status (the apiserver's 503 naming the node whose
    kubelet cannot be reached, a 404 for a missing pod...) raises it as an ApiError, which
    pkubectl prints as ``Error from server (ServiceUnavailable): ...``; any other refusal or
    transport failure is a CliError."""
    import websocket  # websocket-client, deferred
    from pkube.client.errors import error_for_status

    headers = [f"Authorization: Bearer {session.config.token}"] if session.config.token else []
    try:
        return websocket.create_connection(ws_url(session, path, query), header=headers,
                                           subprotocols=list(protocols), sslopt=_sslopt(session.config),
                                           enable_multithread=True)
    except websocket.WebSocketBadStatusException as bad:
        status = refusal_status(bad.status_code, bad.resp_body)
        if status is not None:
            raise error_for_status(status) from None
        raise CliError(f"unable to upgrade connection: {_body_text(bad.resp_body) or f'HTTP {bad.status_code}'}") from None
    except (OSError, websocket.WebSocketException) as error:
        raise CliError(f"unable to upgrade connection: {error}") from None


def refusal_status(code: int, body) -> Optional[dict]:
    """The Status in a refused upgrade's body (None when the body is not one)."""
    text = _body_text(body)
    try:
        status = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        return None
    status.setdefault("code", code)
    return status


def _body_text(body) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace").strip()
    return (body or "").strip()


def run_exec(session, path: str, query: str, stdin: bool, out=sys.stdout, err=sys.stderr, tty: bool = False) -> int:
    """Run the command; copies stdout/stderr, forwards stdin; returns the remote exit code.

    With ``tty`` and a terminal on stdin, the terminal is put in raw mode for the
    session and restored afterwards, even on errors.
    """
    ws = connect(session, path, query, (EXEC_PROTOCOL, *FALLBACK_PROTOCOLS))
    restore = _raw_terminal() if tty and stdin else None
    if stdin:
        threading.Thread(target=_pump_stdin, args=(ws, sys.stdin.buffer), daemon=True).start()
    try:
        return read_frames(ws, _text_writer(out), _text_writer(err))
    finally:
        ws.close()
        if restore:
            restore()


def exec_binary(session, path: str, query: str, stdin_data: Optional[bytes], on_stdout, err=sys.stderr) -> int:
    """Run a command with ``stdin_data`` as its whole stdin (closed after it, v5) and its
    stdout handed to ``on_stdout`` as bytes: the transport of ``cp``. The remote exit code."""
    import io

    ws = connect(session, path, query, (EXEC_PROTOCOL, *FALLBACK_PROTOCOLS))
    if stdin_data is not None:
        threading.Thread(target=_pump_stdin, args=(ws, io.BytesIO(stdin_data)), daemon=True).start()
    try:
        return read_frames(ws, on_stdout, _text_writer(err))
    finally:
        ws.close()


def _text_writer(stream):
    def write(data: bytes) -> None:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
    return write


def _raw_terminal():
    """Put a terminal stdin in raw mode; returns the function restoring it (None when not a tty)."""
    if not sys.stdin.isatty():
        return None
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _sslopt(config) -> dict:
    """websocket-client TLS options from the kubeconfig: the same CA, client cert and
    insecure setting as the REST client."""
    if not config.server.startswith("https://"):
        return {}
    import ssl

    from pkube.client.rest import ssl_context

    context = ssl_context(config)
    if context is False:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    return {"context": context}


def _pump_stdin(ws, data) -> None:
    """Copy ``data`` (a binary file) to the stdin channel, then close it (v5's close frame)."""
    import websocket

    try:
        while True:
            chunk = data.read1(STDIN_CHUNK) if hasattr(data, "read1") else data.read(STDIN_CHUNK)
            if not chunk:
                ws.send_binary(bytes([CLOSE, STDIN]))
                return
            ws.send_binary(bytes([STDIN]) + chunk)
    except (OSError, websocket.WebSocketException):
        return   # the command ended first


def read_frames(ws, on_stdout, on_stderr) -> int:
    """Hand stdout and stderr frames to their callbacks until the error channel's Status (the
    exit code) or the end of the stream (0)."""
    import websocket

    while True:
        try:
            frame = ws.recv()
        except websocket.WebSocketConnectionClosedException:
            return 0
        if not frame:
            return 0
        if isinstance(frame, str):
            frame = frame.encode()
        channel, payload = frame[0], frame[1:]
        if channel == STDOUT:
            on_stdout(payload)
        elif channel == STDERR:
            on_stderr(payload)
        elif channel == ERROR and payload:
            return exit_code_of(json.loads(payload))
