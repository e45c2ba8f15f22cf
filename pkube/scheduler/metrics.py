"""kube-scheduler's metrics (docs/metrics.md): attempts by result, how long an attempt took,
and the pending pods in each part of the scheduling queue (read at each scrape)."""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# kube-scheduler's: 1 ms doubling to ~16 s
ATTEMPT_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
QUEUES = ("active", "backoff", "unschedulable", "gated")
SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"


class PendingPods(Collector):
    """scheduler_pending_pods{queue}: ``places()`` gives where each pending pod waits
    ('active', 'backoff' or 'unschedulable'), counted when scraped."""

    def __init__(self, places: Callable[[], Iterable[str]]):
        self.places = places

    def collect(self):
        counts = dict.fromkeys(QUEUES, 0)
        for place in self.places():
            counts[place] = counts.get(place, 0) + 1
        family = GaugeMetricFamily("scheduler_pending_pods", "Number of pending pods, by the queue type. "
                                   "'active' means number of pods in activeQ; 'backoff' means number of pods "
                                   "in backoffQ; 'unschedulable' means number of pods in unschedulablePods.",
                                   labels=["queue"])
        for queue, count in counts.items():
            family.add_metric([queue], count)
        yield family


class SchedulerMetrics:
    """The metrics of one scheduler (``profile``: its schedulerName) in ``registry``.
    ``attempt(result, seconds)`` is called once per attempt: 'scheduled' when the binding
    succeeded, 'unschedulable' when no node fits, 'error' when the binding failed."""

    def __init__(self, registry: CollectorRegistry, profile: str):
        self.registry = registry
        attempts = Counter("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result. "
                           "'unschedulable' means a pod could not be scheduled, while 'error' means an "
                           "internal scheduler problem.", ["result", "profile"], registry=registry)
        durations = Histogram("scheduler_scheduling_attempt_duration_seconds",
                              "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
                              ["result", "profile"], buckets=ATTEMPT_BUCKETS, registry=registry)
        self._attempts = {r: attempts.labels(r, profile) for r in (SCHEDULED, UNSCHEDULABLE, ERROR)}
        self._durations = {r: durations.labels(r, profile) for r in (SCHEDULED, UNSCHEDULABLE, ERROR)}

    def attempt(self, result: str, seconds: float) -> None:
        self._attempts[result].inc()
        self._durations[result].observe(seconds)

    def measure_pending(self, places: Callable[[], Iterable[str]]) -> None:
        """Report scheduler_pending_pods from ``places()`` at each scrape."""
        self.registry.register(PendingPods(places))
