"""For tests of the kubelet's API on a real runtime: pods made in the runtime as the
kubelet makes them (sandbox and containers labelled with the pod), and a KubeletServer
served from an event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

from pkube.cluster.etcd import free_port
from pkube.kubelet.lookup import CONTAINER_ATTEMPT, CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID, SANDBOX_ATTEMPT
from pkube.kubelet.server import KubeletServer
from pkube.runtime.spec import ContainerSpec, SandboxSpec


class PodMaker:
    """Sandboxes and containers of pods in `rt`, under the cgroup `parent`/pod<uid>."""

    def __init__(self, rt, parent: str):
        self.rt, self.parent = rt, parent

    def sandbox(self, name: str, namespace: str = "default", network: str = "none", attempt: int = 0):
        uid = str(uuid.uuid4())
        labels = {POD_UID: uid, POD_NAME: name, POD_NAMESPACE: namespace, SANDBOX_ATTEMPT: str(attempt)}
        return self.rt.create_sandbox(SandboxSpec(name=f"k8s_POD_{name}_{namespace}_{uid[:8]}_{attempt}",
                                                  labels=labels, network=network,
                                                  cgroup_parent=f"{self.parent}/pod{uid}"))

    def container(self, sandbox, name: str, script: str, attempt: int = 0, **spec):
        """A started container running `sh -c script` in `sandbox`; its record."""
        labels = {**{k: sandbox.labels[k] for k in (POD_UID, POD_NAME, POD_NAMESPACE)},
                  CONTAINER_NAME: name, CONTAINER_ATTEMPT: str(attempt)}
        record = self.rt.create(ContainerSpec(
            image="busybox", command=["sh", "-c", script], labels=labels, sandbox_id=sandbox.id,
            name=f"k8s_{name}_{sandbox.labels[POD_NAME]}_{sandbox.labels[POD_UID][:8]}_{attempt}",
            cgroup_parent=f"{self.parent}/pod{sandbox.labels[POD_UID]}", network="none", **spec))
        self.rt.start(record.id)
        return self.rt.get(record.id)


@contextmanager
def serving_kubelet(rt, tmp_path, **options) -> Iterator[tuple[KubeletServer, str]]:
    """A KubeletServer on a free loopback port, its loop in a thread; yields (server,
    "https://127.0.0.1:PORT"); stopped (and its loop closed) on exit, even on failure."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kubelet-server-loop", daemon=True)
    thread.start()
    port = free_port()
    server = KubeletServer(rt, host="127.0.0.1", port=port, cert_dir=str(tmp_path / "pki"),
                           node_name=options.pop("node_name", "node-1"), **options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)
        yield server, f"https://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
