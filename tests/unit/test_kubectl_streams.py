"""pkubectl logs and exec: the requests they make and how exec ends."""

from urllib.parse import parse_qsl

import pytest

from pkube.kubectl.errors import CliError
from pkube.kubectl.streams import exec_query, exit_code_of, log_params


def test_log_flags_become_query_parameters():
    assert log_params("app", True, True, 10, True) == {
        "container": "app", "follow": "true", "previous": "true", "tailLines": "10", "timestamps": "true"}
    assert log_params(None, False, False, -1, False) == {}


def test_exec_sends_one_command_parameter_per_argument():
    query = parse_qsl(exec_query(["sh", "-c", "echo hi"], "app", stdin=True, tty=False))
    assert [v for k, v in query if k == "command"] == ["sh", "-c", "echo hi"]
    assert ("container", "app") in query and ("stdin", "true") in query and ("stderr", "true") in query
    tty = dict(parse_qsl(exec_query(["sh"], None, stdin=True, tty=True)))
    assert tty["tty"] == "true" and tty["stderr"] == "false"


def test_exit_code_comes_from_the_error_channel_status():
    assert exit_code_of({"status": "Success"}) == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exit_code_of(failure) == 3
    with pytest.raises(CliError, match="container not found"):
        exit_code_of({"status": "Failure", "message": "container not found"})


def _frame(payload: bytes) -> bytes:
    """One unmasked binary WebSocket frame (server to client)."""
    header = bytes([0x82])
    if len(payload) < 126:
        return header + bytes([len(payload)]) + payload
    return header + bytes([126]) + len(payload).to_bytes(2, "big") + payload


def _fake_exec_server(frames: list[bytes]):
    """A loopback server that upgrades one request to v5.channel.k8s.io and sends ``frames``."""
    import base64
    import hashlib
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            lines = request.decode().split("\r\n")
            seen["path"] = lines[0].split()[1]
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            seen["protocols"] = headers.get("sec-websocket-protocol", "")
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] +
                                                    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
            for frame in frames:
                conn.sendall(_frame(frame))
            conn.sendall(b"\x88\x00")  # close

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, seen


def test_exec_copies_streams_and_returns_the_remote_exit_code():
    import io
    import json
    from types import SimpleNamespace

    from pkube.client.kubeconfig import ClientConfig
    from pkube.kubectl.streams import run_exec

    status = {"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    listener, thread, seen = _fake_exec_server([b"\x01hello\n", b"\x02oops\n", b"\x03" + json.dumps(status).encode()])
    try:
        session = SimpleNamespace(config=ClientConfig(server=f"http://127.0.0.1:{listener.getsockname()[1]}"))
        out, err = io.StringIO(), io.StringIO()
        code = run_exec(session, "/api/v1/namespaces/default/pods/web/exec",
                        exec_query(["sh", "-c", "exit 3"], None, False, False), False, out, err)
        thread.join(timeout=5)
    finally:
        listener.close()
    assert (code, out.getvalue(), err.getvalue()) == (3, "hello\n", "oops\n")
    assert seen["path"].startswith("/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c")
    assert "v5.channel.k8s.io" in seen["protocols"]


def test_logs_stream_text_as_it_arrives(tmp_path):
    import http.server
    import io
    import threading

    from pkube.kubectl.session import Flags, Session
    from pkube.kubectl.streams import stream_logs

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["path"] = self.path
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"line 1\nline 2\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{server.server_address[1]}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    session = Session(Flags(kubeconfig=str(kubeconfig)))
    out = io.StringIO()
    try:
        stream_logs(session, "/api/v1/namespaces/default/pods/web/log", log_params("app", False, False, 2, False), out)
    finally:
        session.close()
        server.server_close()
    assert out.getvalue() == "line 1\nline 2\n"
    assert seen["path"] == "/api/v1/namespaces/default/pods/web/log?container=app&tailLines=2"
