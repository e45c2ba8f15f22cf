"""A stand-in kubelet for tests of what the apiserver proxies to one (exec, attach, logs):
serve some Starlette routes on a free loopback port, and the Node that points at it."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from starlette.applications import Starlette

from pkube.cluster.etcd import free_port


@contextmanager
def serving(routes: list) -> Iterator[int]:
    """Serve ``routes`` (Starlette Route/WebSocketRoute) on 127.0.0.1 in a thread; yields the
    port once the server is started, stops it on exit."""
    port = free_port()
    app = Starlette(routes=routes)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def node_with_kubelet(name: str, kubelet_port: int) -> dict:
    """A Node whose kubelet listens on 127.0.0.1:``kubelet_port``."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}}
