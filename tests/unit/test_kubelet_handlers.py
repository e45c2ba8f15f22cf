"""The probe and hook actions: exec through a fake exec_fn, httpGet and tcpSocket against real
loopback servers started by each test, deadlines on a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl

import pytest

from pkube.client.clock import FakeClock
from pkube.kubelet.grpcprobe import decode_status, encode_request
from pkube.kubelet.handlers import ActionError, HandlerResult, Handlers, resolve_port, run_hook


class HttpServer:
    """A loopback HTTP/1.1 server. `answer(path)` gives (status, headers, body), or None to
    keep the connection open without answering. Records (path, headers) of each request."""

    def __init__(self, answer, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.answer, self.tls, self.host = answer, tls, host
        self.requests: list[tuple[str, dict]] = []
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._release.set()
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")
            path = lines[0].split()[1]
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            self.requests.append((path, {k.lower(): v for k, v in headers.items()}))
            self.arrived.set()
            answer = self.answer(path)
            if answer is None:
                await self._release.wait()
                return
            status, extra, body = answer
            text = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                         f"{text}\r\n".encode() + body)
            await writer.drain()
        finally:
            writer.close()


def fixed(status: int, body: bytes = b"", **headers):
    return lambda path: (status, headers, body)


def handlers(clock=None, exec_fn=None, pod_ip="127.0.0.1") -> Handlers:
    async def no_exec(argv, timeout):
        raise AssertionError("no exec expected")
    return Handlers(exec_fn or no_exec, lambda: pod_ip, clock or FakeClock())


def http_probe(port, **fields) -> dict:
    return {"httpGet": {"port": port, **fields}}


async def parked(clock: FakeClock, count: int = 1) -> None:
    """Wait (briefly, for real) until `count` sleeps are pending on the fake clock."""
    for _ in range(2000):
        if clock.sleepers >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("nothing parked on the clock")


def refused_port() -> socket.socket:
    """A bound, not listening socket: connecting to its port is refused (keep it open)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# -- exec


def recording_exec(code=0, output=b"", raises=None):
    calls = []

    async def exec_fn(argv, timeout):
        calls.append((argv, timeout))
        if raises:
            raise raises
        return code, output
    return exec_fn, calls


def test_exec_success_passes_argv_and_timeout():
    exec_fn, calls = recording_exec(0, b"fine\n")
    result = asyncio.run(handlers(exec_fn=exec_fn).run({"exec": {"command": ["cat", "/tmp/healthy"]}}, {}, 3))
    assert result == HandlerResult(True, "fine")
    assert calls == [(["cat", "/tmp/healthy"], 3)]


def test_exec_failure_message_is_the_output_or_the_exit_code():
    action = {"exec": {"command": ["cat", "/tmp/healthy"]}}
    exec_fn, _ = recording_exec(1, b"cat: can't open '/tmp/healthy': No such file or directory\n")
    assert asyncio.run(handlers(exec_fn=exec_fn).run(action, {}, 1)) == \
        HandlerResult(False, "cat: can't open '/tmp/healthy': No such file or directory")
    exec_fn, _ = recording_exec(1, b"")
    assert asyncio.run(handlers(exec_fn=exec_fn).run(action, {}, 1)) == \
        HandlerResult(False, "command 'cat /tmp/healthy' exited with 1")


def test_exec_timeout_and_start_errors_are_failures():
    action = {"exec": {"command": ["sleep", "5"]}}
    exec_fn, _ = recording_exec(raises=TimeoutError("killed"))
    assert asyncio.run(handlers(exec_fn=exec_fn).run(action, {}, 1)) == \
        HandlerResult(False, 'command "sleep 5" timed out')
    exec_fn, _ = recording_exec(raises=RuntimeError("executable file not found in $PATH"))
    assert asyncio.run(handlers(exec_fn=exec_fn).run(action, {}, 1)) == \
        HandlerResult(False, "executable file not found in $PATH")


def test_an_exec_fn_that_ignores_its_timeout_is_given_up_on():
    async def scenario():
        clock = FakeClock()

        async def hangs(argv, timeout):
            await asyncio.Event().wait()
        probe = asyncio.ensure_future(handlers(clock, exec_fn=hangs).run({"exec": {"command": ["x"]}}, {}, 2))
        await parked(clock)
        clock.advance(2)
        await asyncio.sleep(0)
        assert not probe.done()          # exec_fn is trusted to kill it at 2 s...
        clock.advance(1)                 # ... a second later the probe stops waiting
        assert await probe == HandlerResult(False, 'command "x" timed out')
    asyncio.run(scenario())


def test_an_action_that_names_nothing_runnable_fails():
    result = asyncio.run(handlers().run({"periodSeconds": 3}, {}, 1))
    assert not result.ok and "invalid handler" in result.message
    assert not asyncio.run(handlers().run({"sleep": {"seconds": 1}}, {}, 1)).ok   # hooks only
    assert asyncio.run(handlers().run({"exec": {"command": []}}, {}, 1)) == HandlerResult(False, "exec: no command given")


# -- httpGet


def test_http_success_and_failure_statuses():
    async def scenario():
        answers = {"/ok": 200, "/moved-here": 399, "/bad": 500, "/missing": 404}
        async with HttpServer(lambda path: (answers[path], {}, b"")) as server:
            run = handlers().run
            assert await run(http_probe(server.port, path="/ok"), {}, 1) == HandlerResult(True, "")
            assert (await run(http_probe(server.port, path="/moved-here"), {}, 1)).ok
            assert await run(http_probe(server.port, path="/bad"), {}, 1) == \
                HandlerResult(False, "HTTP probe failed with statuscode: 500")
            assert await run(http_probe(server.port, path="/missing"), {}, 1) == \
                HandlerResult(False, "HTTP probe failed with statuscode: 404")
    asyncio.run(scenario())


def test_http_request_goes_to_the_pod_ip_with_path_and_headers():
    async def scenario():
        async with HttpServer(fixed(200)) as server:
            probe = http_probe(server.port, path="healthz?full=1",
                               httpHeaders=[{"name": "X-Custom", "value": "yes"}])
            assert (await handlers(pod_ip="127.0.0.1").run(probe, {}, 1)).ok
            path, headers = server.requests[0]
            assert path == "/healthz?full=1"
            assert (headers["x-custom"], headers["user-agent"], headers["accept"]) == ("yes", "kube-probe/1.32", "*/*")
            assert headers["host"] == f"127.0.0.1:{server.port}"
            probe["httpGet"]["httpHeaders"] = [{"name": "Host", "value": "app.example"},
                                              {"name": "User-Agent", "value": "mine"}]
            assert (await handlers().run(probe, {}, 1)).ok
            assert (server.requests[1][1]["host"], server.requests[1][1]["user-agent"]) == ("app.example", "mine")
    asyncio.run(scenario())


def test_http_explicit_host_wins_over_the_pod_ip():
    async def scenario():
        async with HttpServer(fixed(200)) as server:
            probe = http_probe(server.port, host="127.0.0.1")
            assert (await handlers(pod_ip="10.255.255.1").run(probe, {}, 1)).ok
    asyncio.run(scenario())


def test_http_refused_connection_reads_like_the_kubelet():
    sock = refused_port()
    try:
        port = sock.getsockname()[1]
        result = asyncio.run(handlers().run(http_probe(port), {}, 1))
        assert result == HandlerResult(
            False, f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: connection refused')
    finally:
        sock.close()


def test_http_without_a_pod_ip_or_with_a_bad_host_fails_clearly():
    result = asyncio.run(handlers(pod_ip="").run(http_probe(80), {}, 1))
    assert result == HandlerResult(False, "failed to find networking container: the pod has no IP")
    result = asyncio.run(handlers().run(http_probe(80, host="bad\nhost"), {}, 1))
    assert not result.ok and result.message.startswith('parse "http://bad\\nhost:80/": ')


def test_http_timeout_is_a_failure():
    async def scenario():
        clock = FakeClock()
        async with HttpServer(lambda path: None) as server:
            probe = asyncio.ensure_future(handlers(clock).run(http_probe(server.port, path="/slow"), {}, 2))
            await server.arrived.wait()
            await parked(clock)
            clock.advance(2)
            assert await probe == HandlerResult(
                False, f'Get "http://127.0.0.1:{server.port}/slow": context deadline exceeded '
                       "(Client.Timeout exceeded while awaiting headers)")
    asyncio.run(scenario())


def test_http_named_port_resolves_from_the_container_ports():
    async def scenario():
        async with HttpServer(fixed(200)) as server:
            container = {"name": "web", "ports": [{"name": "metrics", "containerPort": 1},
                                                  {"name": "http", "containerPort": server.port}]}
            assert (await handlers().run(http_probe("http"), container, 1)).ok
            assert await handlers().run(http_probe("admin"), container, 1) == HandlerResult(False, "port admin not found")
    asyncio.run(scenario())


def test_ports_by_number_name_or_numeric_string():
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(81, container) == 81
    assert resolve_port("http", container) == 8080
    assert resolve_port("9090", container) == 9090
    for bad in (0, 65536, None, True, "nope"):
        with pytest.raises(ActionError):
            resolve_port(bad, container)


def test_redirects_are_followed_on_the_same_host_only():
    async def scenario():
        async with HttpServer(fixed(500)) as failing, HttpServer(fixed(200)) as elsewhere:
            here = f"http://127.0.0.1:{failing.port}/down"
            away = f"http://localhost:{elsewhere.port}/up"
            routes = {"/to-same-host": (302, {"Location": here}, b""),
                      "/to-other-host": (301, {"Location": away}, b"gone"),
                      "/relative": (307, {"Location": "/final"}, b""),
                      "/final": (200, {}, b"")}
            async with HttpServer(lambda path: routes[path]) as server:
                run = handlers().run
                assert await run(http_probe(server.port, path="/to-same-host"), {}, 1) == \
                    HandlerResult(False, "HTTP probe failed with statuscode: 500")
                assert [p for p, _ in failing.requests] == ["/down"]          # followed to another port
                result = await run(http_probe(server.port, path="/to-other-host"), {}, 1)
                assert result == HandlerResult(True, "Probe terminated redirects, Response body: gone")
                assert elsewhere.requests == []                                # not followed
                custom_host = [{"name": "Host", "value": "app.example"}]
                assert (await run(http_probe(server.port, path="/relative", httpHeaders=custom_host), {}, 1)).ok
                assert server.requests[-1] == ("/final", server.requests[-1][1])
                assert server.requests[-1][1]["host"] == "app.example"        # kept on a relative redirect
    asyncio.run(scenario())


def test_redirect_loops_stop_after_ten():
    async def scenario():
        async with HttpServer(lambda path: (302, {"Location": "/again"}, b"")) as server:
            result = await handlers().run(http_probe(server.port, path="/again"), {}, 1)
            assert result == HandlerResult(
                False, f'Get "http://127.0.0.1:{server.port}/again": stopped after 10 redirects')
            assert len(server.requests) == 11
    asyncio.run(scenario())


def test_https_does_not_verify_the_certificate(tmp_path):
    async def scenario():
        async with HttpServer(fixed(200), tls=self_signed_context(tmp_path)) as server:
            assert (await handlers().run(http_probe(server.port, scheme="HTTPS"), {}, 1)).ok
            assert server.requests[0][0] == "/"
    asyncio.run(scenario())


def self_signed_context(tmp_path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


# -- tcpSocket


def test_tcp_connects_or_reports_refused():
    async def scenario():
        async with HttpServer(fixed(200)) as server:
            container = {"ports": [{"name": "svc", "containerPort": server.port}]}
            assert await handlers().run({"tcpSocket": {"port": "svc"}}, container, 1) == HandlerResult(True, "")
        sock = refused_port()
        try:
            port = sock.getsockname()[1]
            assert await handlers().run({"tcpSocket": {"port": port}}, {}, 1) == \
                HandlerResult(False, f"dial tcp 127.0.0.1:{port}: connect: connection refused")
        finally:
            sock.close()
    asyncio.run(scenario())


def test_tcp_connect_timeout_is_a_failure():
    async def scenario():
        clock = FakeClock()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)                     # one pending connection fills the queue:
        port = listener.getsockname()[1]       # the next connect hangs in SYN retries
        _, first = await asyncio.open_connection("127.0.0.1", port)
        try:
            probe = asyncio.ensure_future(handlers(clock).run({"tcpSocket": {"port": port}}, {}, 1))
            await parked(clock)
            clock.advance(1)
            assert await probe == HandlerResult(False, f"dial tcp 127.0.0.1:{port}: i/o timeout")
        finally:
            first.close()
            listener.close()
    asyncio.run(scenario())


# -- lifecycle hooks


def test_no_hook_is_none():
    assert asyncio.run(run_hook(handlers(), {"name": "c"}, "postStart", 30)) is None
    assert asyncio.run(run_hook(handlers(), {"name": "c", "lifecycle": {"postStart": {}}}, "preStop", 30)) is None
    with pytest.raises(ValueError):
        asyncio.run(run_hook(handlers(), {}, "preStart", 30))


def test_exec_hook_failure_reads_like_the_kubelet():
    exec_fn, calls = recording_exec(3, b"boom\n")
    container = {"name": "web", "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}}}
    result = asyncio.run(run_hook(handlers(exec_fn=exec_fn), container, "postStart", 30, pod="default/web-0"))
    assert result == HandlerResult(False, 'Exec lifecycle hook ([sh -c exit 3]) for Container "web" in Pod '
                                          '"default/web-0" failed - error: command \'sh -c exit 3\' exited with 3: boom')
    assert calls == [(["sh", "-c", "exit 3"], 30)]
    exec_fn, _ = recording_exec(0, b"")
    assert asyncio.run(run_hook(handlers(exec_fn=exec_fn), container, "postStart", 30)) == HandlerResult(True, "")


def test_http_hook_succeeds_on_any_answer_and_fails_on_no_answer():
    async def scenario():
        async with HttpServer(fixed(500)) as server:
            container = {"name": "web", "lifecycle": {"preStop": {"httpGet": {"port": server.port, "path": "/quit"}}}}
            assert await run_hook(handlers(), container, "preStop", 30) == HandlerResult(True, "")
            assert server.requests[0][1]["user-agent"] == "kube-lifecycle/1.32"
        sock = refused_port()
        try:
            port = sock.getsockname()[1]
            container = {"name": "web", "lifecycle": {"preStop": {"httpGet": {"port": port, "path": "/quit"}}}}
            result = await run_hook(handlers(), container, "preStop", 30)
            assert result == HandlerResult(
                False, f'HTTP lifecycle hook (/quit) for Container "web" failed - error: Get '
                       f'"http://127.0.0.1:{port}/quit": dial tcp 127.0.0.1:{port}: connect: connection refused')
        finally:
            sock.close()
    asyncio.run(scenario())


def test_sleep_hook_sleeps_on_the_clock_within_its_budget():
    async def scenario():
        clock = FakeClock()
        container = {"name": "web", "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}
        hook = asyncio.ensure_future(run_hook(handlers(clock), container, "preStop", 30))
        await parked(clock)
        clock.advance(4)
        await asyncio.sleep(0)
        assert not hook.done()
        clock.advance(1)
        assert await hook == HandlerResult(True, "")
        short = asyncio.ensure_future(run_hook(handlers(clock), container, "preStop", 2))
        await parked(clock)
        clock.advance(2)
        result = await short
        assert not result.ok and "did not finish within 2s" in result.message
    asyncio.run(scenario())


# -- grpc


class HealthServer:
    """A loopback gRPC server answering grpc.health.v1.Health/Check with `status` (or, with
    `implemented=False`, nothing: UNIMPLEMENTED). Records the request bytes."""

    def __init__(self, status: int = 1, implemented: bool = True):
        self.status, self.implemented = status, implemented
        self.requests: list[bytes] = []

    async def __aenter__(self):
        import grpc
        self.server = grpc.aio.server()
        if self.implemented:
            handler = grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(self._check)})
            self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.server.stop(None)

    async def _check(self, request: bytes, context) -> bytes:
        self.requests.append(request)
        return b"\x08" + bytes([self.status])


def test_grpc_health_check_serving_and_not_serving():
    async def scenario():
        async with HealthServer(status=1) as server:
            result = await handlers().run({"grpc": {"port": server.port, "service": "db"}}, {}, 5)
            assert result == HandlerResult(True, "service healthy")
            assert server.requests == [encode_request("db")]
        async with HealthServer(status=2) as server:
            assert await handlers().run({"grpc": {"port": server.port}}, {}, 5) == \
                HandlerResult(False, 'service unhealthy (responded with "NOT_SERVING")')
            assert server.requests == [b""]
        async with HealthServer(implemented=False) as server:
            result = await handlers().run({"grpc": {"port": server.port}}, {}, 5)
            assert not result.ok
            assert result.message.startswith("error: this server does not implement the grpc health protocol")
    asyncio.run(scenario())


def test_grpc_connection_that_never_comes_times_out():
    async def scenario():
        clock = FakeClock()
        sock = refused_port()
        try:
            port = sock.getsockname()[1]
            probe = asyncio.ensure_future(handlers(clock).run({"grpc": {"port": port}}, {}, 1))
            await parked(clock)
            clock.advance(1)
            assert await probe == HandlerResult(
                False, f'timeout: failed to connect service "127.0.0.1:{port}" within 1s')
        finally:
            sock.close()
    asyncio.run(scenario())


def test_grpc_messages_round_trip():
    assert encode_request("") == b""
    assert encode_request("x" * 200)[:3] == b"\x0a\xc8\x01"
    assert decode_status(b"\x08\x02") == 2
    assert decode_status(b"\x12\x02hi\x08\x01") == 1        # unknown fields are skipped
    assert decode_status(b"") == 0
    with pytest.raises(ValueError):
        decode_status(b"\x08")
    assert asyncio.run(handlers().run({"grpc": {"port": "grpc"}}, {}, 1)) == \
        HandlerResult(False, "invalid port number: grpc")
