"""The local load balancer's health checks (pkube/cluster/loadbalancer.py) against real
sockets: against a TLS server each check completes its handshake before it closes (a
connection dropped mid-handshake costs an asyncio server a 256 KiB buffer until a full
collection), and against a plain server it sends nothing."""

from __future__ import annotations

import asyncio
import ssl

from pkube.cluster.loadbalancer import LoadBalancer
from pkube.cluster.pki import CertSpec, ensure_certificates

CHECKS = 5


class Recorder(asyncio.Protocol):
    """One per accepted connection: whether its TLS handshake completed (connection_made
    comes after it), the bytes it received, how it ended."""

    def __init__(self, seen: list):
        seen.append(self)
        self.made, self.received, self.lost = False, b"", []

    def connection_made(self, transport) -> None:
        self.made = True

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)


async def run_checks(context) -> list[Recorder]:
    """Serve (with TLS when ``context``) until a balancer's checks made more than CHECKS
    connections; the first CHECKS (the checks are sequential: these are over), given up to
    5 s to end on the server's side."""
    seen: list[Recorder] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Recorder(seen), "127.0.0.1", 0, ssl=context)
    balancer = LoadBalancer([server.sockets[0].getsockname()[:2]], ("127.0.0.1", 0),
                            check_interval=0.05, tls=context is not None)
    await balancer.start()
    try:
        async with asyncio.timeout(30):
            while len(seen) <= CHECKS:
                await asyncio.sleep(0.05)
        deadline = loop.time() + 5
        while not all(c.lost for c in seen[:CHECKS]) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await balancer.close()
        server.close()
    return seen[:CHECKS]


def test_checks_of_a_tls_server_complete_their_handshake(tmp_path):
    ensure_certificates(tmp_path, [CertSpec("server", "server", client=False, server=True, ips=("127.0.0.1",))])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    checks = asyncio.run(run_checks(context))
    assert all(c.made for c in checks), "a check closed before its TLS handshake completed"
    assert all(c.lost == [None] for c in checks), [c.lost for c in checks]


def test_checks_of_a_plain_server_send_nothing():
    checks = asyncio.run(run_checks(None))
    assert all(c.received == b"" for c in checks), [c.received[:20] for c in checks]
