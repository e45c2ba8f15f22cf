"""The ``apiserver`` fixture: a real apiserver (uvicorn, free loopback port) on the test's etcd."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import httpx
import pytest
import uvicorn

from pkube.apiserver.app import create_app
from pkube.apiserver.storage.cacher import CachedStorage
from pkube.apiserver.storage.etcd import EtcdStorage
from pkube.cluster.etcd import free_port


@dataclass
class RunningApiserver:
    """A served apiserver. ``.storage`` lives on the server's event loop: use
    ``run(coro)`` to call it from the test thread."""

    url: str
    storage: Any
    loop: asyncio.AbstractEventLoop
    etcd: Any
    app: Any = None

    def run(self, coro, timeout: float = 30):
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)


class _ServerThread(threading.Thread):
    def __init__(self, etcd_port: int, app_options: dict, cache_options: dict, host: str = "127.0.0.1"):
        super().__init__(daemon=True, name="apiserver")
        self.etcd_port, self.app_options, self.cache_options = etcd_port, app_options, cache_options
        self.host = host
        self.port = free_port()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.storage = None
        self.server: Optional[uvicorn.Server] = None
        self.app = None
        self.failure: Optional[BaseException] = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.failure = exc

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.storage = await _storage(self.etcd_port, self.cache_options)
        options = dict(self.app_options)
        plugins_for = options.pop("admission_plugins_for", None)   # storage -> plugins that need it
        if plugins_for is not None:
            options["admission_plugins"] = plugins_for(self.storage)
        app = self.app = create_app(self.storage, close_storage=True, **options)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning",
                                access_log=False, timeout_keep_alive=90, timeout_graceful_shutdown=1, lifespan="on")
        self.server = uvicorn.Server(config)
        await self.server.serve()


async def _storage(etcd_port: int, cache_options: dict):
    storage = await EtcdStorage.connect("127.0.0.1", etcd_port)
    return CachedStorage(storage, **cache_options)


def start_apiserver(etcd, cache_options: Optional[dict] = None, host: str = "127.0.0.1",
                    **app_options) -> tuple[_ServerThread, RunningApiserver]:
    """Serve create_app(**app_options) over the watch cache (CachedStorage(**cache_options)),
    on `host` (0.0.0.0: reachable from network namespaces too)."""
    thread = _ServerThread(etcd.client_port, app_options, cache_options or {}, host)
    thread.start()
    deadline = time.monotonic() + 20
    url = f"http://127.0.0.1:{thread.port}"
    while time.monotonic() < deadline:
        if thread.failure is not None or not thread.is_alive():
            raise RuntimeError(f"apiserver failed to start: {thread.failure!r}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200 and thread.server.started:
                return thread, RunningApiserver(url, thread.storage, thread.loop, etcd, thread.app)
        except (httpx.HTTPError, AttributeError):
            pass
        time.sleep(0.05)
    stop_apiserver(thread)
    raise RuntimeError("apiserver did not become ready within 20s")


def stop_apiserver(thread: _ServerThread) -> None:
    if thread.server is not None:
        thread.server.should_exit = True
    thread.join(15)


@pytest.fixture
def apiserver(etcd):
    """A fresh real apiserver over the (wiped) session etcd; yields a RunningApiserver
    with ``.url``, ``.storage`` (on the server's loop: use ``.run(coro)``) and ``.etcd``."""
    thread, running = start_apiserver(etcd, bookmark_interval=0.5)
    try:
        yield running
    finally:
        stop_apiserver(thread)


@pytest.fixture
def http(apiserver):
    """An httpx.Client on the test's ``apiserver`` (the module's own, where it overrides it)."""
    with apiserver.client() as client:
        yield client


@pytest.fixture(scope="module")
def shared_apiserver(etcd_server):
    """One apiserver per test module (starting one costs ~0.5 s); see ``reused_apiserver``."""
    thread, running = start_apiserver(etcd_server, bookmark_interval=0.5)
    try:
        yield running
    finally:
        stop_apiserver(thread)


@pytest.fixture
def reused_apiserver(shared_apiserver):
    """The module's apiserver, with etcd emptied before the test except for the system
    namespaces. Faster than ``apiserver``, but its watch cache remembers earlier tests'
    events: a test about compaction or a cold cache needs ``apiserver``."""
    asyncio.run(_empty_but_system_namespaces(shared_apiserver.etcd.client_port))
    _wait_until_namespaces_settled(shared_apiserver)
    return shared_apiserver


async def _empty_but_system_namespaces(port: int) -> None:
    import aetcd

    from pkube.apiserver.namespaces import SYSTEM_NAMESPACES
    from pkube.apiserver.storage.keys import range_end

    namespaces = b"/registry/namespaces/"
    keep = {namespaces + name.encode() for name in SYSTEM_NAMESPACES}
    async with aetcd.Client(host="127.0.0.1", port=port) as client:
        await client.delete_range(b"\0", namespaces)
        await client.delete_range(range_end(namespaces), b"\0")
        for kv in await client.get_prefix(namespaces):
            if kv.key not in keep:
                await client.delete(kv.key)


def _wait_until_namespaces_settled(api: RunningApiserver) -> None:
    """Wait until the server's namespace cache has seen the wipe (a namespace a test
    creates again must not look active before it exists)."""
    from pkube.apiserver.namespaces import SYSTEM_NAMESPACES

    namespaces = api.app.state.store.namespaces
    deadline = time.monotonic() + 5
    while set(namespaces.active) - set(SYSTEM_NAMESPACES) and time.monotonic() < deadline:
        time.sleep(0.01)
