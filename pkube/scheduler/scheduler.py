"""The scheduler process: informers in, bindings out.

One asyncio loop (see client.informer). Informer handlers only update the
cache and the queue. The scheduling loop pops one pod at a time, runs the
framework against the cache (synchronously: the cache cannot change during
one decision), assumes the pod on the chosen node and hands the binding to a
background task, so the next pod is decided while bindings are in flight
(at most ``bind_concurrency`` at once). A pod that fits nowhere gets
PodScheduled=False/Unschedulable with the framework's message (pods/status)
and a FailedScheduling Event, and waits in the queue for the cluster to change.
Events go through the recorder's bounded buffer (``emit``), never delaying a
binding, and paced as kube-scheduler's client paces them: at most
``event_qps`` a second (burst ``event_burst``; 0 = no pacing), up to
``EVENT_QUEUE`` waiting their turn, more dropped (counted in
``events_dropped``). In a burst of bindings the apiserver keeps its CPU for them.

Pods handled: no spec.nodeName, spec.schedulerName == ``name``, not being
deleted, not finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from prometheus_client import CollectorRegistry

from pkube.client.clock import Clock
from pkube.client.errors import ApiError, Conflict, NotFound
from pkube.client.events import EventRecorder
from pkube.client.informer import Informer
from pkube.client.resources import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS, STORAGECLASSES
from pkube.client.timefmt import rfc3339
from pkube.scheduler.cache import SchedulerCache
from pkube.scheduler.framework import DEFAULT_FILTERS, Framework
from pkube.scheduler.metrics import ERROR, SCHEDULED, UNSCHEDULABLE, SchedulerMetrics
from pkube.scheduler.plugins.volume_binding import VolumeBinding
from pkube.scheduler.queue import QueuedPod, SchedulingQueue
from pkube.scheduler.ratelimit import Pacer
from pkube.scheduler.types import TERMINAL_PHASES, PodInfo, pod_key

log = logging.getLogger(__name__)
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_EVENT_QPS = 50.0           # kube-scheduler's default client QPS and burst
DEFAULT_EVENT_BURST = 100
EVENT_QUEUE = 1000                 # kube-scheduler's broadcaster queue


def is_assigned(pod: dict) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def is_finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def node_scheduling_view(node: dict) -> tuple:
    """The parts of a Node that can change a scheduling decision."""
    spec, status, meta = node.get("spec") or {}, node.get("status") or {}, node.get("metadata") or {}
    ready = [c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return (repr(meta.get("labels")), repr(spec.get("taints")), spec.get("unschedulable"),
            repr(status.get("allocatable")), ready)


def unschedulable_conditions(pod: dict, message: str, now: str) -> Optional[list]:
    """The pod's conditions with PodScheduled=False/Unschedulable; None if already so."""
    conditions = list((pod.get("status") or {}).get("conditions") or [])
    current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
    if current and (current.get("status"), current.get("reason"), current.get("message")) == \
            ("False", "Unschedulable", message):
        return None
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": message, "lastProbeTime": None,
                 "lastTransitionTime": current.get("lastTransitionTime")
                 if current and current.get("status") == "False" else now}
    return [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]


class Scheduler:
    """See the module docstring. ``run()`` until cancelled."""

    def __init__(self, client, name: str = DEFAULT_SCHEDULER_NAME, clock: Optional[Clock] = None,
                 framework: Optional[Framework] = None, bind_concurrency: int = 8,
                 record_scheduled_events: bool = True, event_qps: float = DEFAULT_EVENT_QPS,
                 event_burst: int = DEFAULT_EVENT_BURST, metrics_registry=None):
        """``metrics_registry`` (prometheus_client) gets the scheduler's metrics (scheduler.metrics)."""
        self.client = client
        self.name = name
        self.clock = clock or Clock()
        self.volume_informers = [Informer(client, r, clock=self.clock)
                                 for r in (PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES)]
        self.volume_binding = VolumeBinding(*self.volume_informers)
        self.framework = framework or Framework(filters=(*DEFAULT_FILTERS, self.volume_binding))
        self.cache = SchedulerCache(self.clock)
        self.queue = SchedulingQueue(self.clock)
        self.metrics = SchedulerMetrics(metrics_registry or CollectorRegistry(), name)
        self.metrics.measure_pending(self.queue.places)
        self.recorder = EventRecorder(client, name, clock=self.clock)
        self.record_scheduled_events = record_scheduled_events
        # Paces Events to event_qps (None when unpaced); run() runs it, a test may run it alone.
        self.event_pacer = (Pacer(lambda args: self.recorder.emit(*args), event_qps, event_burst,
                                  EVENT_QUEUE, self.clock) if event_qps > 0 else None)
        self.pods = Informer(client, PODS, clock=self.clock)
        self.nodes = Informer(client, NODES, clock=self.clock)
        self.pods.add_handlers(self.on_pod_add, self.on_pod_update, self.on_pod_delete)
        self.nodes.add_handlers(self.on_node_add, self.on_node_update, self.on_node_delete)
        for informer in self.volume_informers:      # a claim bound, a volume or class made: retry
            informer.add_handlers(lambda obj: self.queue.move_all(), lambda old, obj: self.queue.move_all())
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._background: set = set()
        self.bound = 0

    async def run(self) -> None:
        """Sync the informers, then schedule until cancelled."""
        informers = [asyncio.ensure_future(i.run()) for i in (self.pods, self.nodes, *self.volume_informers)]
        loops = []
        try:
            await asyncio.gather(*(i.wait_synced() for i in (self.pods, self.nodes, *self.volume_informers)))
            log.info("%s: caches synced (%d nodes, %d pending pods)", self.name,
                     len(self.cache.node_list()), len(self.queue))
            loops = [asyncio.ensure_future(self._schedule_loop()),
                     asyncio.ensure_future(self._housekeeping()),
                     asyncio.ensure_future(self.recorder.run())]
            if self.event_pacer is not None:
                loops.append(asyncio.ensure_future(self.event_pacer.run()))
            await asyncio.gather(*informers, *loops)
        finally:
            self.queue.close()
            for task in informers + loops + list(self._background):
                task.cancel()

    def responsible_for(self, pod: dict) -> bool:
        """A pending pod this scheduler must place."""
        spec = pod.get("spec") or {}
        return (not is_assigned(pod) and not is_finished(pod)
                and (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.name
                and not (pod.get("metadata") or {}).get("deletionTimestamp"))

    # informer handlers: they only touch the cache and the queue
    def on_pod_add(self, pod: dict) -> None:
        """The pods informer's add handler: a bound pod counts on its node, a pending one is queued."""
        self.on_pod_update(None, pod)

    def on_pod_update(self, old: Optional[dict], pod: dict) -> None:
        """The pods informer's update handler: cache a bound pod, queue or drop a pending one."""
        if is_assigned(pod):
            self.queue.delete(pod)
            self.cache.add_pod(pod)
            if is_finished(pod) and old is not None and not is_finished(old):
                self.queue.move_all()
        elif self.responsible_for(pod):
            self.queue.add(pod)
        else:
            self.queue.delete(pod)

    def on_pod_delete(self, pod: dict) -> None:
        """The pods informer's delete handler: forget the pod; freed room retries the unschedulable."""
        key = pod_key(pod)
        self.queue.delete(key)
        if is_assigned(pod) or self.cache.is_assumed(key):
            self.cache.remove_pod(key)
            self.queue.move_all()

    def on_node_add(self, node: dict) -> None:
        """The nodes informer's add handler: cache the node and retry every queued pod."""
        self.cache.add_node(node)
        self.queue.move_all()

    def on_node_update(self, old: dict, node: dict) -> None:
        """The nodes informer's update handler: retry queued pods when scheduling-relevant fields changed."""
        self.cache.add_node(node)
        if node_scheduling_view(old) != node_scheduling_view(node):
            self.queue.move_all()

    def on_node_delete(self, node: dict) -> None:
        """The nodes informer's delete handler: drop the node from the cache."""
        self.cache.remove_node(node["metadata"]["name"])

    # scheduling
    async def _schedule_loop(self) -> None:
        while True:
            queued = await self.queue.pop()
            if queued is None:
                return
            self.schedule_one(queued)
            await asyncio.sleep(0)          # let watch events and bindings progress

    def schedule_one(self, queued: QueuedPod) -> Optional[str]:
        """Decide for one popped pod; the node chosen (binding started) or None."""
        started = time.perf_counter()
        try:
            pod_info = PodInfo.from_pod(queued.pod)
        except ValueError as err:
            self._unschedulable(queued, f"invalid pod spec: {err}")
            return None
        result = self.framework.schedule(pod_info, self.cache.node_list(), self.cache.drain_changed())
        if result.node is None:
            self._unschedulable(queued, result.message)
            self.metrics.attempt(UNSCHEDULABLE, time.perf_counter() - started)
            return None
        self.cache.assume(pod_info, result.node)
        self._spawn(self._bind(queued, result.node, started))
        return result.node

    async def _bind(self, queued: QueuedPod, node: str, started: float) -> None:
        try:
            async with self._bind_slots:
                await self.volume_binding.pre_bind(self.client, PERSISTENTVOLUMECLAIMS, queued.pod, node)
                await self.client.bind(queued.pod, node)
        except (NotFound, Conflict) as err:      # deleted, or bound by someone else
            log.info("binding %s to %s: %s", queued.key, node, err)
            self.cache.forget(queued.key)
            self.queue.done(queued.key)
            return
        except ApiError as err:
            log.warning("binding %s to %s failed: %s", queued.key, node, err)
            self.cache.forget(queued.key)
            self.queue.requeue_backoff(queued)
            self.metrics.attempt(ERROR, time.perf_counter() - started)
            await self._report(queued.pod, f"Binding rejected: {err.message}")
            return
        self.cache.finish_binding(queued.key)
        self.queue.done(queued.key)
        self.bound += 1
        self.metrics.attempt(SCHEDULED, time.perf_counter() - started)
        if self.record_scheduled_events:
            meta = queued.pod["metadata"]
            self._event(queued.pod, "Normal", "Scheduled",
                        f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {node}")

    def _unschedulable(self, queued: QueuedPod, message: str) -> None:
        log.info("%s unschedulable: %s", queued.key, message)
        self.queue.requeue_unschedulable(queued)
        self._spawn(self._report(queued.pod, message))

    async def _report(self, pod: dict, message: str) -> None:
        """PodScheduled=False with ``message`` on the pod's status, and a FailedScheduling Event."""
        conditions = unschedulable_conditions(pod, message, rfc3339(self.clock.wall()))
        if conditions is not None:
            meta = pod["metadata"]
            try:
                await self.client.patch(PODS, meta["name"], {"status": {"conditions": conditions}},
                                        meta.get("namespace"), "merge", "status")
            except ApiError as err:
                log.warning("status of %s: %s", pod_key(pod), err)
        self._event(pod, "Warning", "FailedScheduling", message)

    @property
    def events_dropped(self) -> int:
        """Events dropped for want of room while waiting for their turn."""
        return self.event_pacer.dropped if self.event_pacer is not None else 0

    def _event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        """Hand an Event to the recorder now, or when the Event rate allows (see the module docstring)."""
        if self.event_pacer is None:
            self.recorder.emit(pod, type_, reason, message)
        else:
            self.event_pacer.put((pod, type_, reason, message))

    async def _housekeeping(self, period: float = 1.0) -> None:
        while True:
            await self.clock.sleep(period)
            for key in self.cache.cleanup_expired():
                log.warning("assumed pod %s never confirmed; forgotten", key)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())
