"""The proxy's process loop without an apiserver: informer events queue Service keys, the
first round rebuilds the table, a missing table is written again."""

from __future__ import annotations

import asyncio

from pkube.client.fake import FakeApi
from pkube.proxy.nft import NftError
from pkube.proxy.rules import ProxyConfig
from pkube.proxy.server import ProxyServer
from tests.unit.test_proxy_proxier import RecordingNft
from tests.unit.test_proxy_rules import endpoint, endpoint_slice, service


class TableNft(RecordingNft):
    """Also answers table_exists; `broken` refuses every script."""

    def __init__(self):
        super().__init__()
        self.exists, self.broken = True, 0

    def apply(self, script: str) -> None:
        if self.broken:
            self.broken -= 1
            raise NftError("nft -f -: Error: Could not process rule")
        super().apply(script)

    def table_exists(self, table: str) -> bool:
        return self.exists


def make_server() -> tuple[ProxyServer, TableNft]:
    nft = TableNft()
    server = ProxyServer(FakeApi(), ProxyConfig(table="t", node_name="n1"), nft=nft)
    server.proxier.conntrack = None
    return server, nft


def queued(server: ProxyServer) -> set[str]:
    """Take every key off the server's queue, as a round would."""
    keys = set()
    while (key := server.queue.get_nowait()) is not None:
        keys.add(key)
        server.queue.done(key)
    return keys


def test_service_and_slice_events_queue_the_service_key():
    server, _ = make_server()
    server.service_informer.apply_event("ADDED", service("web"))
    slice_ = endpoint_slice("web", [endpoint("10.244.0.2")])
    server.slice_informer.apply_event("ADDED", slice_)
    assert queued(server) == {"default/web"}
    moved = endpoint_slice("other", [endpoint("10.244.0.2")])
    moved["metadata"]["name"] = slice_["metadata"]["name"]           # relabelled to another Service
    server.slice_informer.apply_event("MODIFIED", moved)
    assert queued(server) == {"default/web", "default/other"}
    server.slice_informer.apply_event("DELETED", moved)
    assert queued(server) == {"default/other"}


def test_the_first_round_rebuilds_the_table_and_retries_while_nft_fails():
    server, nft = make_server()
    server.service_informer.apply_event("ADDED", service("web"))
    server.slice_informer.apply_event("ADDED", endpoint_slice("web", [endpoint("10.244.0.2")]))
    server.clock.sleep = lambda _s: asyncio.sleep(0)
    nft.broken = 2                   # the whole table, then the bare table: the round is retried
    asyncio.run(server.rebuild())
    assert nft.scripts[0].startswith("add table ip t\ndelete table ip t\n")
    assert "goto service-default/web/tcp/http" in nft.scripts[0]
    assert queued(server) == set()                      # the rebuild covered the queued key


def test_a_table_deleted_behind_the_proxys_back_is_written_again():
    server, nft = make_server()
    server.service_informer.apply_event("ADDED", service("web"))
    asyncio.run(server.check_table())
    assert nft.scripts == []                            # there: nothing to do (no stale hairpin)
    nft.exists = False
    asyncio.run(server.check_table())
    assert nft.scripts and nft.scripts[0].startswith("add table ip t\ndelete table ip t\n")


def test_rounds_sync_the_queued_services_and_check_the_table_when_its_time_comes():
    server, nft = make_server()
    server.service_informer.apply_event("ADDED", service("web"))
    server.slice_informer.apply_event("ADDED", endpoint_slice("web", [endpoint("10.244.0.2")]))

    async def one_round():
        server.queue.add("default/web")
        server.queue.add("")                 # CHECK_TABLE, as the ticker queues it
        nft.exists = False
        server.queue.shutdown()
        await server.run_rounds()
    asyncio.run(one_round())
    assert "goto service-default/web/tcp/http" in nft.scripts[0]          # the sync
    assert nft.scripts[1].startswith("add table ip t\ndelete table ip t\n")  # then the rebuild
