"""Hollow nodes: one asyncio process that plays N kubelets, as kubemark and KWOK do.

``HollowNodes`` registers N Node objects (capacity, allocatable, Ready with a
heartbeat, nodeInfo, addresses, hostname/os labels), keeps one
coordination.k8s.io/v1 Lease per node in ``kube-node-lease`` renewed every
``renew_interval`` seconds, reports the pods bound to its nodes Running and
Ready through ``pods/{name}/status`` (a pod with restartPolicy Never or OnFailure, a Job's, is reported
Succeeded with exit code 0 after ``run_seconds``), and finishes the deletion of its pods
(a pod with ``deletionTimestamp`` is deleted with grace 0: the kubelet's job).

How it scales to thousands of nodes on a small machine: there is no task per
node. Three de-duplicating work queues (nodes, leases, pods) are drained by a
fixed number of workers each, and at most ``concurrency`` requests are in
flight in all (one semaphore, first come first served, so lease renewals keep
their turn during a burst of pod reports). Lease renewals are spread in time
by the queue's ``add_after`` (each node renews ``renew_interval`` after its
previous renewal). Pods come
from ONE watch of all bound pods (field selector ``spec.nodeName!=``),
filtered here by node name; Nodes from one watch of all nodes, likewise.
Leases are never watched: the last Lease written is the cache. Requests go
through ``AsyncApiClient`` (aiohttp: at 5,000 nodes, 500 Lease renewals a second).

Level-triggered: a restart lists the nodes and pods, creates what is missing,
re-reports what is stale, and keeps the pod IPs already given.

Run it as ``python -m pkube.cluster.hollow --kubeconfig F --nodes N [--name-prefix hollow-]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import logging
import sys
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Iterable, Optional

from pkube.client.aio import AsyncApiClient
from pkube.client.clock import Clock
from pkube.client.errors import AlreadyExists, ApiError, Conflict, NotFound, Unavailable
from pkube.client.informer import Informer
from pkube.client.resources import LEASES, NODES, PODS
from pkube.client.store import index_pods_by_node, object_key
from pkube.client.timefmt import micro_time, rfc3339
from pkube.client.workqueue import WorkQueue

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
HOLLOW_LABEL = "node.pkube.io/hollow"
BOUND_PODS = "spec.nodeName!="
NODE_CONDITIONS = (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                   ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                   ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))
POD_CONDITION_TYPES = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                       "PodScheduled")
# Said on every pod a hollow node reports, so that nobody mistakes it for a running one.
SIMULATED_CONDITION = {"type": "pkube.io/Simulated", "status": "True", "reason": "HollowNode",
                       "message": "reported Running by a hollow node (pkube hollow): no container runs"}
GONE_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class HollowConfig:
    """What each hollow node offers and how the process paces itself (seconds)."""

    cpu: str = "32"
    memory: str = "128Gi"
    pods: str = "110"
    kubelet_version: str = "v1.32.0-pkube-hollow"
    host_cidr: str = "127.30.0.0/16"   # loopback: nothing ever leaves the machine
    lease_duration_seconds: int = 40
    renew_interval: float = 10.0
    status_report_period: float = 300.0
    concurrency: int = 16                 # requests in flight, all kinds together
    run_seconds: float = 0.5              # how long a pod with restartPolicy Never/OnFailure "runs"

    def __post_init__(self):
        if self.renew_interval <= 0 or self.status_report_period <= 0:
            raise ValueError("renew_interval and status_report_period must be > 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.run_seconds < 0:
            raise ValueError("run_seconds must be >= 0")
        ipaddress.ip_network(self.host_cidr)


def node_names(count: int, prefix: str = "hollow-") -> list[str]:
    """The names of ``count`` hollow nodes: prefix0, prefix1, ..."""
    if count < 0:
        raise ValueError(f"the node count must be >= 0, not {count}")
    return [f"{prefix}{i}" for i in range(count)]


def host_ips(names: list[str], host_cidr: str) -> dict[str, str]:
    """Node name -> its hostIP, the (i+1)-th address of ``host_cidr``; ValueError if too small."""
    network = ipaddress.ip_network(host_cidr)
    if len(names) > network.num_addresses - 2:
        raise ValueError(f"{host_cidr} has room for {network.num_addresses - 2} nodes, not {len(names)}")
    return {name: str(network[i + 1]) for i, name in enumerate(names)}


# --------------------------------------------------------------------------- pure object builders

def node_ready_conditions(wall, transition: Optional[dict] = None) -> list[dict]:
    """The conditions of a healthy node at ``wall``; ``transition`` maps type -> the
    lastTransitionTime to keep (for conditions whose status does not change)."""
    now, transition = rfc3339(wall), transition or {}
    conditions = [_condition(kind, "False", reason, message, now, transition.get(kind))
                  for kind, reason, message in NODE_CONDITIONS]
    conditions.append(_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status",
                                 now, transition.get("Ready")))
    return conditions


def _condition(kind, status, reason, message, now, since=None) -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since or now}


def node_object(name: str, host_ip: str, config: HollowConfig, wall) -> dict:
    """A Node as a kubelet registers it: Ready, with capacity, addresses and nodeInfo."""
    resources = {"cpu": config.cpu, "memory": config.memory, "pods": config.pods,
                 "ephemeral-storage": "100Gi"}
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", HOLLOW_LABEL: "true"}
    info = {"kubeletVersion": config.kubelet_version, "kubeProxyVersion": config.kubelet_version,
            "containerRuntimeVersion": "hollow://0.1", "operatingSystem": "linux",
            "architecture": "amd64", "osImage": "pkube hollow node", "kernelVersion": "hollow",
            "machineID": name, "systemUUID": name, "bootID": name}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {"capacity": dict(resources), "allocatable": dict(resources),
                       "conditions": node_ready_conditions(wall),
                       "addresses": [{"type": "InternalIP", "address": host_ip},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                       "nodeInfo": info}}


def node_needs_report(node: dict, wall, report_period: float) -> bool:
    """True when the node is not Ready=True, or its Ready heartbeat is older than the period."""
    ready = _find_condition(node, "Ready")
    if ready is None or ready.get("status") != "True":
        return True
    beat = _parse_time(ready.get("lastHeartbeatTime"))
    return beat is None or (wall - beat).total_seconds() >= report_period


def node_status_patch(node: dict, wall) -> dict:
    """The merge patch making ``node`` Ready again with a fresh heartbeat."""
    kept = {c.get("type"): c.get("lastTransitionTime")
            for c in (node.get("status") or {}).get("conditions") or []
            if _is_healthy_condition(c)}
    return {"status": {"conditions": node_ready_conditions(wall, kept)}}


def _is_healthy_condition(condition: dict) -> bool:
    wanted = "True" if condition.get("type") == "Ready" else "False"
    return condition.get("status") == wanted


def lease_object(name: str, config: HollowConfig, wall, node_uid: Optional[str] = None) -> dict:
    """The node's Lease in kube-node-lease, renewed at ``wall``, owned by the Node when its uid is known."""
    meta = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": name, "leaseDurationSeconds": config.lease_duration_seconds,
                     "renewTime": micro_time(wall)}}


def pod_is_reported(pod: dict, host_ip: str, pod_ip: Optional[str]) -> bool:
    """True when ``pod`` already reads Running and Ready on this host (with this pod IP)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or status.get("hostIP") != host_ip:
        return False
    if pod_ip and status.get("podIP") != pod_ip:
        return False
    ready = _find_condition(pod, "Ready")
    names = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
    reported = {c.get("name") for c in status.get("containerStatuses") or []}
    return bool(ready and ready.get("status") == "True") and names == reported


def pod_running_status(pod: dict, host_ip: str, pod_ip: Optional[str], wall) -> dict:
    """The status a kubelet reports once every container of ``pod`` runs and is ready."""
    status = pod.get("status") or {}
    now = rfc3339(wall)
    started = status.get("startTime") or now
    spec = pod.get("spec") or {}
    result = {"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
              "startTime": started,
              "conditions": [*(_pod_condition(pod, kind, now) for kind in POD_CONDITION_TYPES),
                             {**SIMULATED_CONDITION, "lastProbeTime": None,
                              "lastTransitionTime": started}],
              "containerStatuses": [_running_container(pod, c, started)
                                    for c in spec.get("containers") or []]}
    if spec.get("initContainers"):
        result["initContainerStatuses"] = [_finished_init_container(pod, c, started)
                                           for c in spec["initContainers"]]
    if pod_ip:
        result["podIP"], result["podIPs"] = pod_ip, [{"ip": pod_ip}]
    return result


def runs_to_completion(pod: dict) -> bool:
    """A pod whose containers are not restarted on success (a Job's): it ends Succeeded."""
    return (pod.get("spec") or {}).get("restartPolicy") in ("Never", "OnFailure")


def pod_succeeded_status(pod: dict, wall) -> dict:
    """The status a kubelet reports once every container of ``pod`` exited 0."""
    status = pod.get("status") or {}
    now = rfc3339(wall)
    started = status.get("startTime") or now
    conditions = [{**c, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                  if c.get("type") in ("Ready", "ContainersReady") else c
                  for c in status.get("conditions") or []]
    done = [{"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
             "containerID": _container_id(pod, c), "ready": False, "started": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                      "finishedAt": now, "containerID": _container_id(pod, c)}}}
            for c in (pod.get("spec") or {}).get("containers") or []]
    return {"phase": "Succeeded", "conditions": conditions, "containerStatuses": done}


def _pod_condition(pod: dict, kind: str, now: str) -> dict:
    old = _find_condition(pod, kind) or {}
    since = old.get("lastTransitionTime") if old.get("status") == "True" else None
    return {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": since or now}


def _container_id(pod: dict, container: dict) -> str:
    return f"hollow://{pod['metadata'].get('uid', '')}-{container.get('name', '')}"


def _running_container(pod: dict, container: dict, started: str) -> dict:
    return {"name": container.get("name"), "image": container.get("image", ""),
            "imageID": "", "containerID": _container_id(pod, container), "ready": True,
            "started": True, "restartCount": 0, "state": {"running": {"startedAt": started}}}


def _finished_init_container(pod: dict, container: dict, started: str) -> dict:
    done = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started,
            "containerID": _container_id(pod, container)}
    return {"name": container.get("name"), "image": container.get("image", ""), "imageID": "",
            "containerID": done["containerID"], "ready": True, "restartCount": 0,
            "state": {"terminated": done}}


def _find_condition(obj: dict, kind: str) -> Optional[dict]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def _parse_time(text: Optional[str]) -> Optional[dt.datetime]:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- pod IPs

class PodAddresses:
    """Pod IPs per node from the node's podCIDR: .2 upwards (.1 is the node's gateway).

    Keyed by pod key (namespace/name); an IP a pod already reports is kept when
    it lies in the node's CIDR and is free, so a restart re-learns them.
    """

    def __init__(self):
        self._by_key: dict[str, tuple[str, str]] = {}          # pod key -> (node, ip)
        self._used: dict[str, set[str]] = {}                    # node -> ips in use

    def address_for(self, key: str, node: str, cidr: Optional[str], current: Optional[str]) -> Optional[str]:
        """The pod's IP on ``node`` (allocated on first ask); None without a CIDR or when full."""
        held = self._by_key.get(key)
        if held and held[0] == node and _in_cidr(held[1], cidr):
            return held[1]
        self.release(key)
        if not cidr:
            return None
        used = self._used.setdefault(node, set())
        ip = current if _in_cidr(current, cidr) and current not in used else _first_free(cidr, used)
        if ip is not None:
            used.add(ip)
            self._by_key[key] = (node, ip)
        return ip

    def release(self, key: str) -> None:
        """Free the pod's IP (no-op if it has none)."""
        held = self._by_key.pop(key, None)
        if held:
            self._used.get(held[0], set()).discard(held[1])


def _in_cidr(ip: Optional[str], cidr: Optional[str]) -> bool:
    if not ip or not cidr:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


def _first_free(cidr: str, used: set[str]) -> Optional[str]:
    hosts = ipaddress.ip_network(cidr).hosts()
    next(hosts, None)                                   # .1: the gateway
    for host in hosts:
        if str(host) not in used:
            return str(host)
    return None


# --------------------------------------------------------------------------- the process

Reconcile = Callable[[str], Awaitable[None]]


class HollowNodes:
    """N simulated kubelets over one client; ``run()`` until cancelled.

    ``stop_renewing(name)`` / ``resume_renewing(name)`` cut one node off and back:
    while stopped its Lease is not renewed, its Ready condition not repaired and
    its pods neither reported nor deleted, as a node that lost its network.
    """

    def __init__(self, client, names: list[str], config: Optional[HollowConfig] = None,
                 clock: Optional[Clock] = None, stop_renewing: Iterable[str] = ()):
        self.client = client
        self.config = config or HollowConfig()
        self.clock = clock or Clock()
        self.host_ip = host_ips(names, self.config.host_cidr)
        self.stopped: set[str] = set()
        for name in stop_renewing:
            self.stop_renewing(name)
        self.nodes = Informer(client, NODES, clock=self.clock)
        self.pods = Informer(client, PODS, field_selector=BOUND_PODS, clock=self.clock,
                             indexers={"node": index_pods_by_node})
        self.node_queue = WorkQueue(self.clock)
        self.lease_queue = WorkQueue(self.clock)
        self.pod_queue = WorkQueue(self.clock)
        self.addresses = PodAddresses()
        self.leases: dict[str, dict] = {}
        self.pods_reported = 0
        self._running_since: dict[str, float] = {}     # pod key -> when reported Running
        self._inflight = asyncio.Semaphore(self.config.concurrency)
        self._registered = asyncio.Event()
        self.nodes.add_handlers(self._node_added, self._node_updated)
        self.pods.add_handlers(self._pod_changed, lambda old, new: self._pod_changed(new),
                               self._pod_changed)

    @property
    def names(self) -> list[str]:
        return list(self.host_ip)

    def stop_renewing(self, name: str) -> None:
        """Stop renewing ``name``'s Lease and reporting anything of it (see the class docstring)."""
        self._check_name(name)
        self.stopped.add(name)

    def resume_renewing(self, name: str) -> None:
        """Renew ``name``'s Lease again at once, and restore its Ready condition."""
        self._check_name(name)
        self.stopped.discard(name)
        self.lease_queue.add(name)
        self.node_queue.add(name)
        for pod in self.pods.store.by_index("node", name):
            self.pod_queue.add(object_key(pod))

    def _check_name(self, name: str) -> None:
        if name not in self.host_ip:
            raise ValueError(f"{name!r} is not one of this process's hollow nodes")

    async def wait_registered(self) -> None:
        """Return once every node exists in the API and has a Lease."""
        await self._registered.wait()

    async def run(self) -> None:
        """Register, then renew and report until cancelled."""
        tasks = [asyncio.ensure_future(self.nodes.run()), asyncio.ensure_future(self.pods.run())]
        try:
            await self.nodes.wait_synced()
            for name in self.host_ip:
                self.node_queue.add(name)
            tasks += self._workers(self.node_queue, self.reconcile_node)
            tasks += self._workers(self.lease_queue, self.renew_lease)
            await self.pods.wait_synced()
            self._learn_pod_ips()
            tasks += self._workers(self.pod_queue, self.reconcile_pod)
            tasks.append(asyncio.ensure_future(self._watch_registration()))
            await asyncio.gather(*tasks)
        finally:
            for queue in (self.node_queue, self.lease_queue, self.pod_queue):
                queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _workers(self, queue: WorkQueue, reconcile: Reconcile) -> list[asyncio.Future]:
        """``concurrency`` workers on ``queue``; all queues share one bound on requests in flight."""
        async def bounded(key: str) -> None:
            async with self._inflight:
                await reconcile(key)
        return [asyncio.ensure_future(_work(queue, bounded)) for _ in range(self.config.concurrency)]

    def _learn_pod_ips(self) -> None:
        """Before any allocation: keep the IPs our pods already report (a restart changes none)."""
        for pod in self.pods.store.list():
            node = pod["spec"].get("nodeName")
            if node in self.host_ip and (pod.get("status") or {}).get("podIP"):
                self._pod_ip(object_key(pod), pod, node)

    async def _watch_registration(self) -> None:
        while len(self.leases) < len(self.host_ip) or \
                any(self.nodes.store.get(n) is None for n in self.host_ip):
            await asyncio.sleep(0.1)
        self._registered.set()

    # ----- informer handlers: enqueue only

    def _node_added(self, node: dict) -> None:
        name = node["metadata"]["name"]
        if name in self.host_ip:
            self.node_queue.add(name)
            self.lease_queue.add(name)

    def _node_updated(self, old: dict, new: dict) -> None:
        name = new["metadata"]["name"]
        if name not in self.host_ip:
            return
        self.node_queue.add(name)
        if _pod_cidr(old) != _pod_cidr(new):
            for pod in self.pods.store.by_index("node", name):
                self.pod_queue.add(object_key(pod))

    def _pod_changed(self, pod: dict) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self.host_ip:
            self.pod_queue.add(object_key(pod))
        else:
            self.addresses.release(object_key(pod))

    # ----- reconcilers (raise ApiError to be retried with back-off)

    async def reconcile_node(self, name: str) -> None:
        """Create the node if missing; report it Ready when stale (unless stopped)."""
        node = self.nodes.store.get(name)
        wall = self.clock.wall()
        if node is None:
            try:
                await self.client.create(NODES, node_object(name, self.host_ip[name], self.config, wall))
            except AlreadyExists:
                pass
            return
        if name not in self.stopped and node_needs_report(node, wall, self.config.status_report_period):
            await self.client.patch(NODES, name, node_status_patch(node, wall), subresource="status")
        self.node_queue.add_after(name, self.config.status_report_period)

    async def renew_lease(self, name: str) -> None:
        """Create or renew ``name``'s Lease, then schedule the next renewal."""
        if name in self.stopped and name in self.leases:
            return
        node = self.nodes.store.get(name)
        wall = self.clock.wall()
        current = self.leases.get(name)
        try:
            if current is None:
                self.leases[name] = await self._create_lease(name, node, wall)
            else:
                renewed = {**current, "spec": {**current["spec"], "renewTime": micro_time(wall)}}
                self.leases[name] = await self.client.replace(LEASES, renewed)
        except (Conflict, NotFound):
            self.leases.pop(name, None)
            raise
        self.lease_queue.add_after(name, self.config.renew_interval)

    async def _create_lease(self, name: str, node: Optional[dict], wall) -> dict:
        uid = (node or {}).get("metadata", {}).get("uid")
        body = lease_object(name, self.config, wall, uid)
        try:
            return await self.client.create(LEASES, body)
        except AlreadyExists:
            current = await self.client.get(LEASES, name, LEASE_NAMESPACE)
            current["spec"] = {**(current.get("spec") or {}), **body["spec"]}
            return await self.client.replace(LEASES, current)

    async def reconcile_pod(self, key: str) -> None:
        """Finish the deletion of a deleted pod, or report a bound one Running and Ready."""
        pod = self.pods.store.get(key)
        node = (pod or {}).get("spec", {}).get("nodeName")
        if pod is None or node not in self.host_ip:
            self.addresses.release(key)
            self._running_since.pop(key, None)
            return
        if node in self.stopped:
            return                                    # resume_renewing re-queues its pods
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finish_deletion(pod)
            self.addresses.release(key)
            self._running_since.pop(key, None)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        pod_ip = self._pod_ip(key, pod, node)
        if pod_is_reported(pod, self.host_ip[node], pod_ip):
            if runs_to_completion(pod):
                await self._complete_when_run(key, pod)
            return
        status = pod_running_status(pod, self.host_ip[node], pod_ip, self.clock.wall())
        await self.client.patch(PODS, meta["name"], {"status": status}, meta.get("namespace"),
                                subresource="status")
        self.pods_reported += 1
        if runs_to_completion(pod):
            self._running_since[key] = self.clock.now()
            self.pod_queue.add_after(key, self.config.run_seconds)

    async def _complete_when_run(self, key: str, pod: dict) -> None:
        """Report a run-to-completion pod Succeeded once it has run ``run_seconds``."""
        since = self._running_since.setdefault(key, self.clock.now())
        left = since + self.config.run_seconds - self.clock.now()
        if left > 0:
            self.pod_queue.add_after(key, left)
            return
        meta = pod["metadata"]
        await self.client.patch(PODS, meta["name"], {"status": pod_succeeded_status(pod, self.clock.wall())},
                                meta.get("namespace"), subresource="status")
        self._running_since.pop(key, None)

    def _pod_ip(self, key: str, pod: dict, node: str) -> Optional[str]:
        """hostNetwork pods share the node's IP; others get one from its podCIDR (None without)."""
        if (pod.get("spec") or {}).get("hostNetwork") in (True, "true"):
            return self.host_ip[node]
        cidr = _pod_cidr(self.nodes.store.get(node) or {})
        return self.addresses.address_for(key, node, cidr, (pod.get("status") or {}).get("podIP"))

    async def _finish_deletion(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                     preconditions={"uid": meta.get("uid")})
        except NotFound:
            pass
        except Conflict:
            pass                                      # a new pod took the name: not ours to delete


def _pod_cidr(node: dict) -> Optional[str]:
    return (node.get("spec") or {}).get("podCIDR")


async def _work(queue: WorkQueue, reconcile: Reconcile) -> None:
    """One worker: reconcile keys until the queue shuts down; failures back off per key."""
    while True:
        key = await queue.get()
        if key is None:
            return
        try:
            await reconcile(key)
            queue.forget(key)
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            log.warning("%s: %s", key, err)
            queue.add_rate_limited(key)
        except Exception:  # a bug on one key must not stop the worker
            log.exception("%s: reconcile failed", key)
            queue.add_rate_limited(key)
        finally:
            queue.done(key)


async def run_hollow_nodes(client, count: int, name_prefix: str = "hollow-",
                           config: Optional[HollowConfig] = None, clock: Optional[Clock] = None,
                           stop_renewing: Iterable[str] = ()) -> None:
    """Simulate ``count`` nodes named ``name_prefix``0.. over ``client`` until cancelled."""
    hollow = HollowNodes(client, node_names(count, name_prefix), config, clock, stop_renewing)
    await hollow.run()


# --------------------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pkube.cluster.hollow",
                                description="simulate N kubelets (hollow nodes) against an apiserver")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--nodes", type=int, required=True, help="how many nodes")
    p.add_argument("--name-prefix", default="hollow-", help="node names are PREFIX0, PREFIX1, ...")
    p.add_argument("--cpu", default=HollowConfig.cpu, help="cpu capacity per node")
    p.add_argument("--memory", default=HollowConfig.memory, help="memory capacity per node")
    p.add_argument("--max-pods", default=HollowConfig.pods, help="pods capacity per node")
    p.add_argument("--host-cidr", default=HollowConfig.host_cidr, help="hostIPs of the nodes")
    p.add_argument("--renew-interval", type=float, default=HollowConfig.renew_interval,
                   help="seconds between Lease renewals of one node")
    p.add_argument("--concurrency", type=int, default=HollowConfig.concurrency,
                   help="requests in flight at most")
    p.add_argument("--run-seconds", type=float, default=HollowConfig.run_seconds,
                   help="seconds a pod with restartPolicy Never/OnFailure runs before it Succeeds")
    p.add_argument("--stop-renewing", action="append", default=[], metavar="NODE",
                   help="never renew this node's Lease (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    from pkube.client.kubeconfig import load_kubeconfig
    config = HollowConfig(cpu=args.cpu, memory=args.memory, pods=str(args.max_pods),
                          host_cidr=args.host_cidr, renew_interval=args.renew_interval,
                          concurrency=args.concurrency, run_seconds=args.run_seconds)
    client_config = replace(load_kubeconfig(args.kubeconfig, args.context), user_agent="kubelet/v1.32.0 pkube-hollow")
    async with AsyncApiClient(client_config, timeout=60.0) as client:
        names = node_names(args.nodes, args.name_prefix)
        hollow = HollowNodes(client, names, config, stop_renewing=args.stop_renewing)
        work = asyncio.ensure_future(hollow.run())
        watchdog = asyncio.ensure_future(_exit_when_gone(client, client_config.server))
        await hollow.wait_registered()
        print(f"pkube hollow: {len(names)} simulated nodes ({names[0]} .. {names[-1]}) registered at "
              f"{client_config.server}; their pods are reported Running but no container runs. "
              "Ctrl-C stops them.", flush=True)
        done, _ = await asyncio.wait([work, watchdog], return_when=asyncio.FIRST_COMPLETED)
        for task in (work, watchdog):
            task.cancel()
        await asyncio.gather(work, watchdog, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()


async def _exit_when_gone(client, server: str, period: float = 2.0) -> None:
    """Return once the apiserver has not answered for GONE_AFTER_SECONDS (its cluster was
    stopped): hollow nodes then exit instead of logging connection errors forever."""
    failing_since = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            await client.list(NODES, limit=1)
            failing_since = None
        except Unavailable:
            failing_since = failing_since or loop.time()
            if loop.time() - failing_since >= GONE_AFTER_SECONDS:
                print(f"pkube hollow: the apiserver at {server} has not answered for "
                      f"{GONE_AFTER_SECONDS:.0f}s; stopping", flush=True)
                return
        await asyncio.sleep(period)


def main(argv=None) -> int:
    from pkube.client.component import run_main
    args = parse_args(argv)
    return run_main("hollow", args.verbose, lambda: _serve(args))


if __name__ == "__main__":
    sys.exit(main())
