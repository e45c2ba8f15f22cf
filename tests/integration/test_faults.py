"""Faults injected on purpose into a real apiserver process over a real etcd (issue 12):

- kill -9 of the apiserver in the middle of 1,000 concurrent creates: every create answered
  201 is there after the restart, and clients that retry the rest with the same names
  (AlreadyExists after an uncertain failure meaning "it was done") end with exactly 1,000
  objects, none twice. Our client never replays a POST by itself: a 409 for a create the
  caller never saw fail would show it.
- 20 clients incrementing one annotation with retry-on-conflict (GET, +1, PUT with the
  resourceVersion, again on 409), 50 times each: the counter ends at exactly 1,000.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading

from pkube.client.aio import AsyncApiClient
from pkube.client.errors import AlreadyExists, ApiError, Conflict
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CONFIGMAPS
from pkube.client.rest import ApiClient
from pkube.cluster.components import Component, python_module
from pkube.cluster.etcd import free_port
from tests.helpers.waiting import wait_for

CLIENTS, PER_CLIENT = 20, 50
NAMESPACE = "default"


def apiserver(etcd, tmp_path, port: int, n: int) -> Component:
    """The n-th apiserver process on ``port`` (same flags each time), started and ready."""
    api = Component(f"apiserver-{n}", python_module("pkube.apiserver", "--etcd-servers", etcd.endpoint, "--port", str(port),
                                                    "--compaction-interval", "0"),
                    tmp_path / f"apiserver-{n}.log", health_url=f"http://127.0.0.1:{port}/readyz")
    api.start()
    return api


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"name": name}}


def uncertain(err: ApiError) -> bool:
    """No answer, or a 5xx: the create may or may not have been done. (429 and other 4xx are
    answers: not done.)"""
    return err.code >= 500


class Ledger:
    """What the clients saw, for the assertions."""

    def __init__(self):
        self.acknowledged: set[str] = set()      # answered 201
        self.done_after_doubt: set[str] = set()  # 409 AlreadyExists after an uncertain failure
        self.surprises: list[str] = []           # 409 for a create never seen to fail
        self.failures = 0


async def create_until_done(client: AsyncApiClient, name: str, ledger: Ledger) -> None:
    """Create ``name`` until an answer says it exists, retrying uncertain failures with the same name."""
    doubted = False
    while True:
        try:
            await client.create(CONFIGMAPS, configmap(name), NAMESPACE)
            ledger.acknowledged.add(name)
            return
        except AlreadyExists:
            (ledger.done_after_doubt.add(name) if doubted else ledger.surprises.append(name))
            return
        except ApiError as err:
            if uncertain(err):
                doubted = True
                ledger.failures += 1
            await asyncio.sleep(0.05)


async def creates(url: str, ledger: Ledger) -> None:
    """CLIENTS clients, each its own connection pool, PER_CLIENT creates each, concurrently."""
    async def one_client(c: int) -> None:
        async with AsyncApiClient(ClientConfig(url), timeout=10) as client:
            for i in range(PER_CLIENT):
                await create_until_done(client, f"cm-{c:02d}-{i:02d}", ledger)
    await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))


def test_killing_the_apiserver_during_1000_creates_loses_nothing_and_duplicates_nothing(etcd, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ledger = Ledger()
    servers = [apiserver(etcd, tmp_path, port, 0)]
    load = threading.Thread(target=lambda: asyncio.run(creates(url, ledger)), name="creates")
    try:
        load.start()
        wait_for(lambda: len(ledger.acknowledged) >= 300, timeout=30)
        servers[0].proc.send_signal(signal.SIGKILL)
        servers[0].proc.wait(10)
        acknowledged_before_kill = set(ledger.acknowledged)
        servers.append(apiserver(etcd, tmp_path, port, 1))
        load.join(60)
        assert not load.is_alive()

        with ApiClient(ClientConfig(url)) as api:
            names = [cm["metadata"]["name"] for cm in api.list_all(CONFIGMAPS, NAMESPACE)["items"]]
        wanted = {f"cm-{c:02d}-{i:02d}" for c in range(CLIENTS) for i in range(PER_CLIENT)}
        assert ledger.surprises == []
        assert acknowledged_before_kill <= set(names)
        assert ledger.acknowledged | ledger.done_after_doubt == wanted
        assert len(names) == len(set(names)) == CLIENTS * PER_CLIENT and set(names) == wanted
        assert ledger.failures > 0          # the kill did interrupt creates in flight
    finally:
        for server in servers:
            server.stop()


ANNOTATION = "pkube.test/counter"


async def increment(client: AsyncApiClient, name: str, conflicts: list) -> None:
    """GET, +1, PUT with the resourceVersion read; on 409 Conflict, again after a jittered,
    exponentially growing wait (so that 20 writers of one object do not keep colliding)."""
    attempt = 0
    while True:
        cm = await client.get(CONFIGMAPS, name, NAMESPACE)
        annotations = cm["metadata"].setdefault("annotations", {})
        annotations[ANNOTATION] = str(int(annotations.get(ANNOTATION, "0")) + 1)
        try:
            await client.replace(CONFIGMAPS, cm, NAMESPACE)
            return
        except Conflict:
            conflicts.append(1)
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(0.002 * 2 ** attempt, 0.2)))


async def increments(url: str, name: str, conflicts: list) -> None:
    async def one_client() -> None:
        async with AsyncApiClient(ClientConfig(url), timeout=10) as client:
            for _ in range(PER_CLIENT):
                await increment(client, name, conflicts)
    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


def test_20_clients_incrementing_one_annotation_with_retry_on_conflict_count_exactly_1000(etcd, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = apiserver(etcd, tmp_path, port, 0)
    try:
        with ApiClient(ClientConfig(url)) as api:
            api.create(CONFIGMAPS, configmap("counter"), NAMESPACE)
            conflicts: list = []
            asyncio.run(increments(url, "counter", conflicts))
            print(f"{len(conflicts)} conflicts for {CLIENTS * PER_CLIENT} increments")
            final = api.get(CONFIGMAPS, "counter", NAMESPACE)["metadata"]["annotations"][ANNOTATION]
        assert final == str(CLIENTS * PER_CLIENT)
        assert conflicts                    # the clients did race
    finally:
        server.stop()
