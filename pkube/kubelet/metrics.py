"""The kubelet's metrics (docs/metrics.md), served on its HTTPS API at /metrics (authorized as
``nodes/metrics``, like the kubelet's other endpoints).

- kubelet_pod_start_duration_seconds: from the kubelet first seeing a pod to the first status
  it reports with phase Running (pods adopted from the runtime after a restart excluded);
- kubelet_running_pods and kubelet_running_containers{container_state}: from the last status
  reported for each pod the kubelet still has a worker for, counted when scraped;
- kubelet_pleg_relist_duration_seconds: this kubelet has no periodic relist (PLEG); the
  runtime tells it of container exits through an event file. The histogram times each pass
  over those events (the event-based equivalent), with kubelet_pleg_last_seen_seconds the
  time of the last one.
Every call comes from the kubelet's event loop.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# kubelet's pod start buckets, seconds
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                     1800, 2700, 3600)
RELIST_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CONTAINER_STATES = {"running": "running", "terminated": "exited", "waiting": "waiting"}


class PodCounts(Collector):
    """kubelet_running_pods and kubelet_running_containers from ``statuses()`` (the last
    status of each live pod)."""

    def __init__(self, statuses: Callable[[], Iterable[dict]]):
        self.statuses = statuses

    def collect(self):
        pods, containers = 0, dict.fromkeys(CONTAINER_STATES.values(), 0)
        for status in self.statuses():
            pods += status.get("phase") == "Running"
            for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
                for container in status.get(key) or ():
                    state = next(iter(container.get("state") or {}), "waiting")
                    containers[CONTAINER_STATES.get(state, "waiting")] += 1
        running = GaugeMetricFamily("kubelet_running_pods", "Number of pods that have a running pod sandbox")
        running.add_metric([], pods)
        yield running
        family = GaugeMetricFamily("kubelet_running_containers", "Number of containers currently running",
                                   labels=["container_state"])
        for state, count in containers.items():
            family.add_metric([state], count)
        yield family


class KubeletMetrics:
    """The metrics of one kubelet in ``registry``; ``live()`` gives the uids the kubelet has
    pod workers for (statuses of other pods are dropped when scraped)."""

    def __init__(self, registry: CollectorRegistry, live: Callable[[], Iterable[str]]):
        self.registry, self.live = registry, live
        self.pod_start = Histogram("kubelet_pod_start_duration_seconds", "Duration in seconds from kubelet "
                                   "seeing a pod for the first time to the pod starting to run",
                                   buckets=POD_START_BUCKETS, registry=registry)
        self.relist = Histogram("kubelet_pleg_relist_duration_seconds", "Duration in seconds for one pass over "
                                "the runtime's container events (this kubelet's event-based PLEG)",
                                buckets=RELIST_BUCKETS, registry=registry)
        self.last_seen = Gauge("kubelet_pleg_last_seen_seconds", "Timestamp in seconds when the container "
                               "events were last handled", registry=registry)
        self._seen: dict[str, float] = {}
        self._statuses: dict[str, dict] = {}
        registry.register(PodCounts(self._live_statuses))

    def pod_seen(self, uid: str) -> None:
        """The kubelet starts working on a pod it has not run before."""
        self._seen.setdefault(uid, time.monotonic())

    def reported(self, pod: dict, status: dict) -> None:
        """A pod worker reports ``status``; the first Running one ends the pod's start."""
        uid = pod["metadata"]["uid"]
        self._statuses[uid] = status
        if status.get("phase") == "Running" and uid in self._seen:
            self.pod_start.observe(time.monotonic() - self._seen.pop(uid))

    def events_handled(self, seconds: float) -> None:
        """One pass over the runtime's container events took ``seconds``."""
        self.relist.observe(seconds)
        self.last_seen.set(time.time())

    def _live_statuses(self) -> list[dict]:
        live = set(self.live())
        for uid in [u for u in self._statuses if u not in live]:
            del self._statuses[uid]
        for uid in [u for u in self._seen if u not in live]:
            del self._seen[uid]
        return list(self._statuses.values())
