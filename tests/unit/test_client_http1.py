"""pkube/client/http1.py against scripted HTTP servers on loopback: keep-alive, closed idle
connections, chunked answers, connection: close, lost answers, slots."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from pkube.client.http1 import Http1Pool, TransportError


async def serve(handler):
    """A loopback server running ``handler(reader, writer)`` per connection; (server, port)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def pool_for(handler, headers=None, **kwargs):
    """An Http1Pool on a loopback server running ``handler``; both closed on leaving."""
    server, port = await serve(handler)
    pool = Http1Pool(f"http://127.0.0.1:{port}", headers or {}, None, 5, **kwargs)
    try:
        yield pool
    finally:
        pool.close()
        server.close()


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_requests_reuse_one_connection_and_carry_headers_and_body():
    seen, connections = [], []

    async def handler(reader, writer):
        connections.append(writer)
        try:
            while True:
                seen.append(await read_request(reader))
                writer.write(answer(b'{"n":%d}' % len(seen)))
        except asyncio.IncompleteReadError:
            writer.close()

    async def main():
        async with pool_for(handler, {"Authorization": "Bearer t"}) as pool:
            first = await pool.request("POST", "/api/v1/x", {"a": "b c"}, b'{"k":1}', "application/json")
            second = await pool.request("GET", "/api/v1/y", {}, None, "application/json")
        return first, second

    first, second = run(main())
    assert first == (200, b'{"n":1}') and second == (200, b'{"n":2}')
    assert len(connections) == 1
    assert seen[0].startswith(b"POST /api/v1/x?a=b+c HTTP/1.1\r\n")
    assert b"Authorization: Bearer t\r\n" in seen[0] and seen[0].endswith(b'\r\n\r\n{"k":1}')
    assert b"Content-Type: application/json\r\nContent-Length: 7\r\n" in seen[0]


def test_an_idle_connection_the_server_closed_is_replaced_without_an_error():
    connections = []

    async def handler(reader, writer):  # answers one request per connection, then hangs up
        connections.append(writer)
        await read_request(reader)
        writer.write(answer(b"ok"))
        await writer.drain()
        writer.close()

    async def main():
        async with pool_for(handler) as pool:
            results = []
            for _ in range(3):
                results.append(await pool.request("GET", "/", {}, None, "application/json"))
                await asyncio.sleep(0.05)
            return results

    assert run(main()) == [(200, b"ok")] * 3
    assert len(connections) == 3


def test_chunked_answers_and_connection_close_are_understood():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()

    async def main():
        async with pool_for(handler) as pool:
            return [await pool.request("GET", "/", {}, None, "application/json") for _ in range(2)]

    assert run(main()) == [(201, b"abcde")] * 2
    assert len(connections) == 2   # "Connection: close" is honoured: no reuse


def test_a_request_whose_answer_never_comes_complete_is_a_transport_error():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        await writer.drain()
        writer.close()

    async def main():
        async with pool_for(handler) as pool:
            with pytest.raises(TransportError):
                await pool.request("POST", "/", {}, b"{}", "application/json")

    run(main())


def test_nobody_listening_is_a_transport_error():
    async def main():
        server, port = await serve(lambda r, w: None)
        server.close()
        await server.wait_closed()
        with pytest.raises(TransportError, match="cannot connect"):
            await Http1Pool(f"http://127.0.0.1:{port}", {}, None, 5).request("GET", "/", {}, None, "x")

    run(main())


def test_requests_in_flight_are_capped():
    in_flight, peak = [0], [0]

    async def handler(reader, writer):
        try:
            while True:
                await read_request(reader)
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
                await asyncio.sleep(0.02)
                in_flight[0] -= 1
                writer.write(answer(b"ok"))
        except asyncio.IncompleteReadError:
            writer.close()

    async def main():
        async with pool_for(handler, max_connections=3) as pool:
            return await asyncio.gather(*(pool.request("GET", "/", {}, None, "x") for _ in range(12)))

    assert run(main()) == [(200, b"ok")] * 12
    assert peak[0] == 3


def dying_after_first_answer(seen: list):
    """A server that answers the first request of each connection, then reads the next one
    and hangs up without answering (a server killed after it may have acted on it)."""
    async def handler(reader, writer):
        seen.append(await read_request(reader))
        writer.write(answer(b"first"))
        await writer.drain()
        try:
            seen.append(await read_request(reader))
        except asyncio.IncompleteReadError:
            pass
        writer.transport.abort()
    return handler


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_write_lost_on_a_reused_connection_is_not_replayed(method):
    seen: list = []

    async def main():
        async with pool_for(dying_after_first_answer(seen)) as pool:
            assert await pool.request("GET", "/", {}, None, "x") == (200, b"first")
            with pytest.raises(TransportError):
                await pool.request(method, "/api/v1/namespaces/default/configmaps", {}, b"{}", "application/json")

    run(main())
    assert [r.split(b" ")[0] for r in seen] == [b"GET", method.encode()]   # sent once, never twice


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_an_idempotent_request_lost_on_a_reused_connection_is_sent_again(method):
    seen: list = []

    async def main():
        async with pool_for(dying_after_first_answer(seen)) as pool:
            assert await pool.request("GET", "/", {}, None, "x") == (200, b"first")
            return await pool.request(method, "/again", {}, None, "x")

    status, _ = run(main())
    assert status == 200
    assert [r.split(b" ")[0] for r in seen] == [b"GET", method.encode(), method.encode()]


def test_a_write_on_a_connection_closed_before_it_is_sent_goes_on_a_new_one():
    seen: list = []

    async def handler(reader, writer):     # one answer per connection, then it hangs up
        seen.append(await read_request(reader))
        writer.write(answer(b"ok"))
        await writer.drain()
        writer.close()

    async def main():
        async with pool_for(handler) as pool:
            assert await pool.request("GET", "/", {}, None, "x") == (200, b"ok")
            conn = pool.idle[-1]
            conn.transport.close()         # closing, not yet lost: nothing can be written to it
            conn.closed = False
            return await pool.request("POST", "/create", {}, b"{}", "application/json")

    assert run(main()) == (200, b"ok")
    assert [r.split(b" ")[0] for r in seen] == [b"GET", b"POST"]


async def wait_until(condition) -> None:
    """Poll ``condition()`` until true (run() fails the test after 20 s)."""
    while not condition():
        await asyncio.sleep(0.01)


def keep_alive_server(open_writers: list):
    """A keep-alive server that answers every request after a short delay (so concurrent
    requests need a connection each) and keeps ``open_writers`` its open connections."""
    async def handler(reader, writer):
        open_writers.append(writer)
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.05)
                writer.write(answer(b"ok"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_writers.remove(writer)
            writer.close()
    return handler


def test_connections_the_server_closed_leave_the_pool():
    """Issue 12: a burst opens connections; the newest idle one is reused first, so the others
    stayed in the pool after the server closed them, each holding its transport (with TLS,
    asyncio's 256 KiB read buffer): the scheduler grew by ~16 MiB in the soak."""
    writers: list = []

    async def main():
        async with pool_for(keep_alive_server(writers)) as pool:
            await asyncio.gather(*(pool.request("GET", "/", {}, None, "x") for _ in range(8)))
            assert len(pool.idle) == 8
            for writer in list(writers):
                writer.transport.abort()          # the server's idle timeout
            await wait_until(lambda: not pool.idle)      # the pool lets go of the closed ones
            assert await pool.request("GET", "/", {}, None, "x") == (200, b"ok")
            return len(pool.idle)

    assert run(main()) == 1


def test_connections_left_idle_by_a_burst_are_closed():
    """Connections idle for IDLE_SECONDS (the client no longer reuses them) are closed and
    dropped when a request ends, not kept open on both sides until the server's timeout."""
    import pkube.client.http1 as http1
    writers: list = []

    async def main():
        async with pool_for(keep_alive_server(writers)) as pool:
            await asyncio.gather(*(pool.request("GET", "/", {}, None, "x") for _ in range(8)))
            assert len(pool.idle) == 8 and len(writers) == 8
            for conn in pool.idle[:-1]:        # seven of them left idle long ago
                conn.idle_since -= http1.IDLE_SECONDS
            assert await pool.request("GET", "/", {}, None, "x") == (200, b"ok")
            held = len(pool.idle)
            await wait_until(lambda: len(writers) == 1)   # the server sees the seven others closed
            return held

    assert run(main()) == 1


def test_closed_connections_are_freed_without_the_cycle_collector():
    """A closed connection (and, with TLS, its 256 KiB read buffer) is freed when it closes:
    the components run the collector rarely (pkube/client/gcpolicy.py), and a connection
    left in a reference cycle waited for it (29 of them in the scheduler after 4 minutes)."""
    import gc
    import weakref

    writers: list = []

    async def main():
        async with pool_for(keep_alive_server(writers)) as pool:
            await asyncio.gather(*(pool.request("GET", "/", {}, None, "x") for _ in range(8)))
            refs = [weakref.ref(conn) for conn in pool.idle]
            for writer in list(writers):
                writer.transport.abort()
            await wait_until(lambda: not pool.idle)
            return [ref() is None for ref in refs]

    gc.disable()
    try:
        assert run(main()) == [True] * 8
    finally:
        gc.enable()
