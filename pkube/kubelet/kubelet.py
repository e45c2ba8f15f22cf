"""The kubelet: one node's agent. It puts together the node agent (Node + Lease), the pod
sources (pods bound to the node in the API; static pods from the manifests directory), one
worker per pod, the status manager, mirror pods, exit events from the runtime and the
kubelet's own HTTPS API.

A kubelet that restarts re-adopts every sandbox and container the runtime holds (they carry
their pod's uid in labels) and restarts none of them; once both sources have been read, what
belongs to no pod any more is stopped and removed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from pkube.client.errors import ApiError, Conflict, NotFound
from pkube.client.events import EventRecorder
from pkube.client.informer import Informer
from pkube.client.metrics import new_registry
from pkube.client.resources import NODES, PODS
from pkube.kubelet import node as nodes
from pkube.kubelet.containers import PodRuntime
from pkube.kubelet.imagegc import HIGH_THRESHOLD_PERCENT, LOW_THRESHOLD_PERCENT, ImageGC
from pkube.kubelet.imagegc import PERIOD_SECONDS as IMAGE_GC_PERIOD_SECONDS
from pkube.kubelet.metrics import KubeletMetrics
from pkube.kubelet.mirror import MirrorPods, is_mirror
from pkube.kubelet.objectwatch import ReferencedObjects
from pkube.kubelet.nodeagent import NodeAgent
from pkube.kubelet.podworker import PodWorker, Services
from pkube.kubelet.references import pod_references
from pkube.kubelet.serviceenv import ServiceEnv
from pkube.kubelet.setup import PodSetup
from pkube.kubelet.static import StaticPodSource
from pkube.kubelet.statusmanager import StatusManager
from pkube.kubelet.tokens import TokenManager
from pkube.runtime.exitwatch import ExitWatcher

log = logging.getLogger(__name__)

RUNTIME_THREADS = 8
LOG_ROTATION_SECONDS = 10.0
ORPHAN_STOP_SECONDS = 2.0


@dataclass
class KubeletConfig:
    """Flags of `python -m pkube.kubelet`."""

    node_name: str
    root_dir: str = "/var/lib/pkube/kubelet"
    manifests_dir: str = "/etc/kubernetes/manifests"
    port: int = 10250
    address: str = ""                 # the node's InternalIP (default: the default route's source)
    pod_cidr: str = ""                # when no node IPAM assigns one
    cgroup_root: str = "kubepods"
    bridge: str = "pkube-pods"
    nft_table: str = "pkubelet"
    cluster_cidr: str = "10.244.0.0/16"   # every node's pods: reached unmasqueraded ("" = masquerade all)
    serve: bool = True                # the HTTPS API on `port`
    tls_cert_file: str = ""           # its serving certificate (default: self-signed, made in root_dir/pki)
    tls_private_key_file: str = ""
    client_ca_file: str = ""          # callers must present a certificate of this CA (default: anyone)
    authorization_mode: str = "AlwaysAllow"   # Webhook: callers authorized by the apiserver (kubelet.auth)
    labels: Optional[dict] = None
    cluster_dns: tuple[str, ...] = ()  # the cluster DNS Service's address(es) for ClusterFirst pods
    cluster_domain: str = "cluster.local"
    image_gc_high_percent: int = HIGH_THRESHOLD_PERCENT
    image_gc_low_percent: int = LOW_THRESHOLD_PERCENT
    container_log_max_bytes: int = 10 * 1024 * 1024
    container_log_max_files: int = 5

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.root_dir, "runtime")


class Kubelet:
    """Runs the pods of one node until cancelled."""

    def __init__(self, config: KubeletConfig, client, runtime):
        self.config = config
        self.client = client
        self.runtime = runtime
        self.address = config.address or nodes.default_node_address()
        self.executor = ThreadPoolExecutor(RUNTIME_THREADS, thread_name_prefix="runtime")
        self.pods = PodRuntime(runtime, config.cgroup_root)
        self.statuses = StatusManager(client)
        self.events = EventRecorder(client, "kubelet", host=config.node_name)
        self.exits = ExitWatcher(runtime.store.root)
        self.exit_owner: dict[str, str] = {}
        self.exit_waiters: dict[str, list[asyncio.Future]] = {}
        self.api_pods: dict[str, dict] = {}
        self.static_pods: dict[str, dict] = {}
        self.workers: dict[str, PodWorker] = {}
        self.metrics = KubeletMetrics(new_registry(), self.workers.keys)
        self._tasks: dict[str, asyncio.Future] = {}
        self.finished_uids: set[str] = set()
        self.adopted: dict = {}
        self.api_synced = False
        self.network_ready = False
        self.mirrors = MirrorPods(client, config.node_name, on_created=self._mirror_created)
        self.node_config = nodes.NodeConfig(name=config.node_name, address=self.address, port=config.port,
                                            labels=dict(config.labels or {}))
        self.agent = NodeAgent(client, self.node_config, self._facts, lambda: self.network_ready)
        self.objects = ReferencedObjects(client, self._object_changed)
        self.service_env = ServiceEnv(client)
        self.setup = PodSetup(runtime, config.root_dir, config.node_name,
                              self.objects, self.run_blocking,
                              self.events.emit, self.address,
                              allocatable=nodes.allocatable(self._facts(), self.node_config),
                              cluster_dns=list(config.cluster_dns),
                              cluster_domain=config.cluster_domain, service_env=self.service_env)
        self.services = Services(pods=self.pods, run=self.run_blocking, report=self._report_status,
                                 event=self.events.emit, watch_exit=self._watch_exit, exit_of=self._exit_of,
                                 finished=self._finished,
                                 prepare=self.setup, host_ip=self.address,
                                 admit=asyncio.Semaphore(RUNTIME_THREADS))
        self.image_gc = ImageGC(runtime, config.image_gc_high_percent, config.image_gc_low_percent)
        self.setup.image_gc = self.image_gc
        self.setup.tokens = TokenManager(client)
        self.static = StaticPodSource(config.manifests_dir, config.node_name, self._static_changed,
                                      self._manifest_error)

    # ----- plumbing -----

    async def run_blocking(self, fn, *args, **kwargs):
        """Run a blocking runtime call in the kubelet's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def _facts(self) -> nodes.HostFacts:
        return nodes.read_host_facts(self.config.root_dir)

    def _watch_exit(self, cid: str, uid: str) -> None:
        self.exit_owner[cid] = uid
        self.exits.watch(cid)

    def _exit_of(self, cid: str) -> asyncio.Future:
        """A future set at `cid`'s next exit event (the container must be watched)."""
        future = asyncio.get_running_loop().create_future()
        self.exit_waiters.setdefault(cid, []).append(future)
        return future

    def _report_status(self, pod: dict, status: dict) -> None:
        """A pod worker's status: measured (kubelet.metrics), then written (StatusManager)."""
        self.metrics.reported(pod, status)
        self.statuses.set(pod, status)

    def _on_exits(self) -> None:
        started = time.perf_counter()
        self._handle_exits()
        self.metrics.events_handled(time.perf_counter() - started)

    def _handle_exits(self) -> None:
        for cid in self.exits.read():
            for future in self.exit_waiters.pop(cid, []):
                if not future.done():
                    future.set_result(cid)
            worker = self.workers.get(self.exit_owner.get(cid, ""))
            if worker is not None:
                worker.wake()

    # ----- the main loop -----

    async def run(self) -> None:
        os.makedirs(self.config.root_dir, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.adopted = await self.run_blocking(self.pods.adopt)
        log.info("kubelet %s: %d pods found in the runtime", self.config.node_name, len(self.adopted))
        cidr = self.config.pod_cidr or _read(self._cidr_file())
        if cidr:
            await self._ensure_network(cidr)
        loop.add_reader(self.exits.fileno(), self._on_exits)
        self.static.scan()
        pods = Informer(self.client, PODS, field_selector=f"spec.nodeName={self.config.node_name}")
        pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        node = Informer(self.client, NODES, field_selector=f"metadata.name={self.config.node_name}")
        node.add_handlers(self._node_seen, lambda old, new: self._node_seen(new), None)
        server = self._server()
        if server is not None:
            await server.start()
        try:
            await asyncio.gather(self.agent.run(), self.static.run(), self.statuses.run(), self.events.run(),
                                 self.mirrors.run(), pods.run(), node.run(), self._wait_synced(pods),
                                 self._collect_images(), self._rotate_logs(), self.service_env.run())
        finally:
            loop.remove_reader(self.exits.fileno())
            if server is not None:
                await server.stop()
            for worker_task in list(self._tasks.values()):
                worker_task.cancel()
            self.objects.stop()
            self.executor.shutdown(wait=False, cancel_futures=True)

    def _server(self):
        if not self.config.serve:
            return None
        from pkube.kubelet.server import KubeletServer
        return KubeletServer(self.runtime, port=self.config.port, cert_dir=os.path.join(self.config.root_dir, "pki"),
                             node_name=self.config.node_name,
                             pods_fn=lambda: [w.pod for w in self.workers.values()],
                             tls_files=(self.config.tls_cert_file, self.config.tls_private_key_file),
                             client_ca_file=self.config.client_ca_file or None, auth=self._server_auth(),
                             metrics_registry=self.metrics.registry)

    def _server_auth(self):
        """The API's authentication and authorization (kubelet.auth) in Webhook mode, else None."""
        if self.config.authorization_mode != "Webhook":
            return None
        from pkube.kubelet.auth import KubeletAuth
        return KubeletAuth(self.client, self.config.node_name)

    async def _wait_synced(self, pods: Informer) -> None:
        await pods.wait_synced()
        self.api_synced = True
        self._reconcile_sources()

    def _object_changed(self, kind: str, new: dict) -> None:
        """A Secret or ConfigMap appeared or changed: wake the workers of the pods that read it
        (one waiting for it starts at once, one using it gets its volume updated)."""
        meta = new["metadata"]
        for worker in self.workers.values():
            if worker.pod["metadata"].get("namespace") == meta.get("namespace") and \
                    (kind, meta["name"]) in pod_references(worker.pod):
                worker.wake()

    async def _collect_images(self) -> None:
        """Image garbage collection every PERIOD_SECONDS."""
        while True:
            await asyncio.sleep(IMAGE_GC_PERIOD_SECONDS)
            try:
                await self.run_blocking(self.image_gc.collect)
            except Exception:   # noqa: BLE001 - logged; the next period tries again
                log.exception("image garbage collection failed")

    async def _rotate_logs(self) -> None:
        """Every LOG_ROTATION_SECONDS, rotate the logs of running containers grown past the limit."""
        while True:
            await asyncio.sleep(LOG_ROTATION_SECONDS)
            running = [t.current.id for w in list(self.workers.values()) for t in w.tracks.values()
                       if t.current is not None and t.current.status == "running"]
            if running:
                await self.run_blocking(self._rotate, running)

    def _rotate(self, container_ids: list[str]) -> None:
        for cid in container_ids:
            try:
                self.runtime.rotate_log(cid, self.config.container_log_max_bytes, self.config.container_log_max_files)
            except Exception as err:   # noqa: BLE001 - gone meanwhile, or a full disk: next time
                log.debug("log of %s not rotated: %s", cid, err)

    # ----- the node and its network -----

    def _node_seen(self, node: dict) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and not self.network_ready:
            asyncio.ensure_future(self._ensure_network(cidr))

    async def _ensure_network(self, cidr: str) -> None:
        from pkube.runtime.network import BridgeNetwork
        network = BridgeNetwork(os.path.join(self.runtime.root, "network"), bridge=self.config.bridge,
                                subnet=cidr, nft_table=self.config.nft_table,
                                no_masquerade=self.config.cluster_cidr)
        try:
            await self.run_blocking(network.ensure)
        except Exception as err:   # noqa: BLE001 - reported; the node stays NotReady
            log.error("pod network %s on %s cannot be set up: %s", cidr, self.config.bridge, err)
            return
        self.runtime.set_network(network)
        _write(self._cidr_file(), cidr)
        self.network_ready = True
        self.pods.network = network
        log.info("pod network %s on bridge %s", cidr, self.config.bridge)
        self.agent.poke()
        for worker in self.workers.values():
            worker.wake()

    def _cidr_file(self) -> str:
        """The pod CIDR last set up: a restarted kubelet releases old addresses on the same bridge."""
        return os.path.join(self.config.root_dir, "pod-cidr")

    # ----- pod sources -----

    def _pod_added(self, pod: dict) -> None:
        if is_mirror(pod):
            self.mirrors.seen(pod)
            return
        self.api_pods[pod["metadata"]["uid"]] = pod
        self._reconcile_sources()

    def _pod_updated(self, _old: dict, pod: dict) -> None:
        self._pod_added(pod)

    def _pod_deleted(self, pod: dict) -> None:
        if is_mirror(pod):
            self.mirrors.gone(pod)
            return
        uid = pod["metadata"]["uid"]
        self.api_pods.pop(uid, None)
        self.finished_uids.discard(uid)
        self._reconcile_sources()

    def _static_changed(self, pods: dict) -> None:
        self.static_pods = pods
        self.mirrors.set_static(pods)
        self._reconcile_sources()

    def _manifest_error(self, message: str) -> None:
        log.error("static pod manifest skipped: %s", message)
        node_ref = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.config.node_name, "uid": self.config.node_name}}
        self.events.emit(node_ref, "Warning", "FailedStaticPod", message)

    def _mirror_created(self, uid: str) -> None:
        self.statuses.forget(uid)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.wake()

    def _reconcile_sources(self) -> None:
        """Start a worker for each new pod, hand each worker its pod's newest spec, and tell
        workers whose pod is gone from every source to terminate."""
        desired = {**self.api_pods, **self.static_pods}
        for uid, pod in desired.items():
            if uid in self.finished_uids:
                continue
            worker = self.workers.get(uid)
            if worker is None:
                self._start_worker(pod)
            elif worker.pod is not pod:
                self._track_references(pod)
                worker.update(pod)
        for uid, worker in self.workers.items():
            if uid not in desired and (self.api_synced or uid in self.static_pods):
                worker.remove()
        if self.api_synced and self.adopted:
            orphans, self.adopted = self.adopted, {}
            for uid, adopted in orphans.items():
                if uid not in desired:
                    asyncio.ensure_future(self._remove_orphan(adopted))
                else:
                    self.adopted[uid] = adopted

    def _start_worker(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        self._track_references(pod)
        adopted = self.adopted.pop(uid, None)
        worker = PodWorker(pod, self.services, adopted)
        self.workers[uid] = worker
        if adopted is None:             # an adopted pod was started by an earlier kubelet
            self.metrics.pod_seen(uid)
        self._tasks[uid] = asyncio.ensure_future(worker.run())

    def _track_references(self, pod: dict) -> None:
        meta = pod["metadata"]
        self.objects.track(meta["uid"], meta.get("namespace") or "default", pod_references(pod))

    async def _remove_orphan(self, adopted) -> None:
        """Sandboxes and containers of a pod that no source knows any more."""
        log.info("removing the containers of pod %s, which is gone", adopted.uid)
        for records in adopted.containers.values():
            for record in records:
                await self.run_blocking(self.pods.stop, record.id, ORPHAN_STOP_SECONDS)
                await self.run_blocking(self.pods.remove, record.id)
        for sandbox in adopted.sandboxes:
            await self.run_blocking(self.pods.remove_sandbox, sandbox.id)

    async def _finished(self, pod: dict) -> None:
        """A worker terminated its pod: forget it, and delete the API object it was
        terminated for (a graceful deletion's last step)."""
        meta = pod["metadata"]
        uid = meta["uid"]
        self.workers.pop(uid, None)
        self._tasks.pop(uid, None)
        self.objects.untrack(uid)
        self.statuses.forget(uid)
        for cid in [c for c, owner in self.exit_owner.items() if owner == uid]:
            self.exit_owner.pop(cid, None)
            self.exit_waiters.pop(cid, None)
            self.exits.unwatch(cid)
        if uid in self.api_pods:
            self.finished_uids.add(uid)
            await self._delete_api_pod(pod)
        elif uid in self.static_pods:      # a static pod whose manifest came back meanwhile
            self._reconcile_sources()

    async def _delete_api_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        while True:
            try:
                await self.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                         preconditions={"uid": meta["uid"]})
                return
            except (NotFound, Conflict):
                return
            except ApiError as err:
                log.info("pod %s/%s: delete failed (%s); retrying", meta.get("namespace"), meta["name"], err)
                await asyncio.sleep(2)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
