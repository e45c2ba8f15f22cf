"""A node's local load balancer in front of the live apiservers, as k3s's agent runs one.

Components on a node (kubelet, proxy) talk to ``https://127.0.0.1:6444``; the
balancer passes each TCP connection through, TLS untouched, to one apiserver.
It sticks to one server while that server answers (so a client's requests and
watches see one watch cache) and moves to the next when a connect fails or the
health check (a TCP connect every ``check_interval`` seconds) finds the server
gone; moving closes the connections still open to the dead server, so that
clients reconnect at once instead of waiting for a TCP timeout. The first server
given is preferred (a control-plane node lists its own apiserver first): once it
has passed ``FAILBACK_CHECKS`` checks in a row after a failover, the balancer
moves back to it and closes the connections to the server it used meanwhile, so
that the load a failover piled onto one apiserver spreads again. The servers are
the ones given at start-up plus, once known, the endpoints of
``default/kubernetes`` (every live apiserver: pkube/apiserver/endpointleases.py),
followed through the balancer itself.

Why TCP and not a virtual IP: nothing on the node needs privileges or ARP
tricks, a joined machine needs no route to a floating address, and each client's
certificate reaches the apiserver unchanged (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from dataclasses import dataclass, field
from typing import Optional

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 6444)
CONNECT_TIMEOUT = 2.0
CHECK_INTERVAL = 1.0
FAILBACK_CHECKS = 3     # checks in a row the preferred server passes before the balancer returns to it
BUFFER = 65536


def parse_server(text: str) -> tuple[str, int]:
    """``https://host:port``, ``host:port`` or ``[v6]:port`` → (host, port); ValueError else."""
    text = text.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a server address (host:port): {text!r}")
    return host.strip("[]"), int(port)


@dataclass
class ServerList:
    """The apiservers, in order, with the one in use, the ones found dead and the preferred
    one (the first given). ``candidates`` keeps the current server while it is healthy, else
    takes the next healthy one (wrapping); with none healthy it still offers every server in
    turn, so that a balancer whose checks lag never refuses outright. ``fail_back`` returns to
    the preferred server once it passed ``FAILBACK_CHECKS`` checks in a row."""

    servers: list[tuple[str, int]]
    current: int = 0
    down: set = field(default_factory=set)
    passed: dict = field(default_factory=dict)      # server -> checks passed in a row
    preferred: Optional[tuple[str, int]] = None     # default: the first server

    def __post_init__(self):
        if self.preferred is None and self.servers:
            self.preferred = self.servers[0]

    def candidates(self) -> list[tuple[str, int]]:
        """The servers to try, in order: the current one first, dead ones last."""
        n = len(self.servers)
        order = [self.servers[(self.current + i) % n] for i in range(n)]
        return [s for s in order if s not in self.down] + [s for s in order if s in self.down]

    def use(self, server: tuple[str, int]) -> None:
        self.current = self.servers.index(server)
        self.down.discard(server)

    def failed(self, server: tuple[str, int]) -> None:
        """A connect to ``server`` failed: it is down and its run of passed checks ends."""
        self.down.add(server)
        self.passed[server] = 0

    def answered(self, server: tuple[str, int]) -> None:
        """A health check of ``server`` passed."""
        self.down.discard(server)
        self.passed[server] = self.passed.get(server, 0) + 1

    def fail_back(self) -> Optional[tuple[str, int]]:
        """Make the preferred server current again when another one is and the preferred one
        passed ``FAILBACK_CHECKS`` checks in a row; the server left, or None (nothing changed)."""
        current = self.servers[self.current]
        if (current == self.preferred or self.preferred not in self.servers
                or self.passed.get(self.preferred, 0) < FAILBACK_CHECKS):
            return None
        self.use(self.preferred)
        return current

    def replace(self, servers: list[tuple[str, int]]) -> None:
        """New membership; the current server stays current when still a member."""
        current = self.servers[self.current] if self.servers else None
        self.servers = list(dict.fromkeys(servers))
        self.down &= set(self.servers)
        self.current = self.servers.index(current) if current in self.servers else 0


class LoadBalancer:
    """TCP pass-through from ``listen`` to one of ``servers``; ``start`` then
    ``close``. ``set_servers`` changes the membership (the configured ``fallback``
    servers stay members: they are how the balancer first reaches the cluster). ``tls``: the
    servers speak TLS (the health check completes a handshake; see ``_check``)."""

    def __init__(self, servers: list[tuple[str, int]], listen: tuple[str, int] = DEFAULT_LISTEN,
                 check_interval: float = CHECK_INTERVAL, tls: bool = True):
        if not servers:
            raise ValueError("a load balancer needs at least one server")
        self.fallback = list(servers)
        self.servers = ServerList(list(servers))
        self.listen, self.check_interval = listen, check_interval
        self.open: dict[tuple[str, int], set[asyncio.StreamWriter]] = {}
        self.server: Optional[asyncio.base_events.Server] = None
        self.checker: Optional[asyncio.Task] = None
        self.probe_tls = _probe_context() if tls else None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when ``listen`` asked for port 0)."""
        return self.server.sockets[0].getsockname()[:2]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, *self.listen, reuse_address=True)
        self.checker = asyncio.create_task(self._check_forever(), name="lb-health")

    async def close(self) -> None:
        if self.checker is not None:
            self.checker.cancel()
            await asyncio.gather(self.checker, return_exceptions=True)
        if self.server is not None:
            self.server.close()
        for server in list(self.open):
            self._drop_connections(server)

    def set_servers(self, servers: list[tuple[str, int]]) -> None:
        """Members are ``servers`` plus the fallback; connections to a server no longer a
        member are closed."""
        wanted = list(dict.fromkeys([*servers, *self.fallback]))
        if wanted == self.servers.servers:
            return
        log.info("apiservers: %s", ", ".join(f"{h}:{p}" for h, p in wanted))
        self.servers.replace(wanted)
        for server in list(self.open):
            if server not in wanted:
                self._drop_connections(server)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            client_w.close()
            return
        server, (server_r, server_w) = upstream
        self.open.setdefault(server, set()).update((client_w, server_w))
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            self.open.get(server, set()).difference_update((client_w, server_w))
            for writer in (client_w, server_w):
                writer.close()

    async def _connect(self):
        """(server, streams) of the first candidate that accepts; None when none does."""
        for server in self.servers.candidates():
            try:
                streams = await asyncio.wait_for(asyncio.open_connection(*server), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                self._mark_down(server, exc)
                continue
            if self.servers.servers and server in self.servers.servers:
                self.servers.use(server)
            return server, streams
        log.warning("no apiserver accepts connections")
        return None

    def _mark_down(self, server: tuple[str, int], why: object) -> None:
        if server not in self.servers.down:
            log.warning("apiserver %s:%s is down: %s", *server, why)
        self.servers.failed(server)
        self._drop_connections(server)

    def _drop_connections(self, server: tuple[str, int]) -> None:
        for writer in self.open.pop(server, set()):
            writer.close()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            await asyncio.gather(*(self._check(server) for server in list(self.servers.servers)))
            self._fail_back()

    def _fail_back(self) -> None:
        """Back to the preferred server once it is steadily healthy again (``ServerList.fail_back``):
        the connections to the server left are closed, as at a failover, so that their clients
        reconnect to the preferred one (a request in flight on one fails, as it would have if
        the server had died; clients retry what is safe to retry)."""
        left = self.servers.fail_back()
        if left is not None:
            log.info("apiserver %s:%s is back for %d checks: moving clients back from %s:%s",
                     *self.servers.preferred, FAILBACK_CHECKS, *left)
            self._drop_connections(left)

    async def _check(self, server: tuple[str, int]) -> None:
        """A TCP connect decides whether ``server`` is up. The check then completes a TLS
        handshake (nothing verified, its outcome ignored) before it closes: an apiserver
        on Python 3.11 keeps a connection closed in the middle of its handshake in a reference
        cycle with its 256 KiB read buffer until a full collection, and the checks of three
        nodes came every third of a second (the soak's apiservers went up and down by 60 MiB)."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*server), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            self._mark_down(server, exc)
            return
        if self.probe_tls is not None:
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.start_tls(self.probe_tls), CONNECT_TIMEOUT)
        writer.close()
        if server in self.servers.down:
            log.info("apiserver %s:%s is back", *server)
        self.servers.answered(server)


def _probe_context() -> ssl.SSLContext:
    """The health check's TLS client: it only completes a handshake, so it verifies nothing."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error, then half-close ``writer``."""
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def endpoint_servers(endpoints: dict) -> list[tuple[str, int]]:
    """(address, port) of every ready address of a ``kubernetes`` Endpoints object."""
    servers = []
    for subset in endpoints.get("subsets") or []:
        ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") in ("https", "http", None)]
        servers += [(a["ip"], port) for a in subset.get("addresses") or [] for port in ports[:1]]
    return servers


async def follow_endpoints(balancer: LoadBalancer, kubeconfig: str) -> None:
    """Keep ``balancer``'s members equal to default/kubernetes' endpoints, read through the
    balancer with ``kubeconfig`` (whose server is the balancer); runs until cancelled."""
    from pkube.client.aio import AsyncApiClient
    from pkube.client.informer import Informer
    from pkube.client.kubeconfig import load_kubeconfig
    from pkube.client.resources import ENDPOINTS

    config = load_kubeconfig(kubeconfig)
    async with AsyncApiClient(config) as client:
        informer = Informer(client, ENDPOINTS, namespace="default", field_selector="metadata.name=kubernetes")

        def update(*objects: dict) -> None:
            servers = endpoint_servers(objects[-1])
            if servers:
                balancer.set_servers(servers)

        informer.add_handlers(on_add=update, on_update=update)
        await informer.run()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pkube.cluster.loadbalancer",
                                     description="a node's local load balancer in front of the apiservers")
    parser.add_argument("--listen", default="%s:%d" % DEFAULT_LISTEN, help="address:port to serve on")
    parser.add_argument("--server", action="append", required=True,
                        help="an apiserver (https://host:port); repeat for several")
    parser.add_argument("--kubeconfig", help="a kubeconfig whose server is this balancer: the live "
                                             "apiservers are then followed from default/kubernetes")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    plain = all(s.startswith("http://") for s in args.server)   # apiservers without TLS (tests)
    balancer = LoadBalancer([parse_server(s) for s in args.server], parse_server(args.listen), tls=not plain)
    await balancer.start()
    log.info("serving on %s:%s", *balancer.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    follower = asyncio.create_task(follow_endpoints(balancer, args.kubeconfig)) if args.kubeconfig else None
    await stop.wait()
    if follower is not None:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    await balancer.close()


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s loadbalancer %(levelname)s %(message)s")
    try:
        asyncio.run(run(args))
    except (ValueError, OSError) as exc:
        print(f"loadbalancer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
