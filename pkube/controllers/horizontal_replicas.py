"""The HorizontalPodAutoscaler's arithmetic (pure), as Kubernetes' replica_calculator.go and
horizontal.go compute it; the controller (pkube/controllers/horizontal.py) feeds it what it read.

- ``resource_replicas``: the replica count a Resource metric asks for, from per-pod usage and
  requests: Utilization (usage / request, in whole percent) or AverageValue. Within the
  tolerance (10%) the count stays. Pods being deleted or Failed are ignored; Pending pods, and
  for CPU pods not yet Ready (or Ready so recently that the sample predates it, within the
  first 5 minutes), count as using nothing on a scale-up and are left out otherwise; pods
  without a sample count as using their request (or the target, if higher) on a scale-down
  and nothing on a scale-up; a recount that flips the direction keeps the current count.
- ``stabilized``: the recommendation after the stabilisation windows (the lowest recent
  recommendation bounds a scale-up, the highest recent one a scale-down).
- ``rate_limited``: the count after spec.behavior's policies (replicas changed within each
  policy's period count against it) and min/maxReplicas, with the ScalingLimited reason;
  ``default_limited`` is the rule without a behavior (at most max(2x, 4) up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0
DEFAULT_DOWNSCALE_WINDOW = 300.0
SCALE_UP_LIMIT_FACTOR = 2
SCALE_UP_LIMIT_MINIMUM = 4


class MetricsError(Exception):
    """No replica count can be computed from this metric (the message says why)."""


@dataclass(frozen=True)
class Sample:
    """One pod's usage: millicores for cpu, bytes otherwise; ``at`` and ``window`` in seconds."""

    value: int
    at: float = 0.0
    window: float = 0.0


@dataclass(frozen=True)
class PodView:
    """What the calculator needs of a pod (times as seconds on the controller's wall clock)."""

    name: str
    phase: str = "Running"
    deleting: bool = False
    ready: Optional[bool] = True          # None: no Ready condition
    ready_since: Optional[float] = None   # the Ready condition's lastTransitionTime
    started: Optional[float] = 0.0        # status.startTime; None when not started
    request: Optional[int] = None         # the summed request of the resource; None: missing


@dataclass(frozen=True)
class Proposal:
    replicas: int
    utilization: Optional[int]            # whole percent of the request (Utilization targets)
    average: int                          # average usage of the pods with samples


# --------------------------------------------------------------------------- replica calculator

def _group(pods: list[PodView], samples: dict[str, Sample], cpu: bool, now: float):
    ready, unready, missing = 0, set(), set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        sample = samples.get(pod.name)
        if sample is None:
            missing.add(pod.name)
            continue
        if cpu and _unready_for_cpu(pod, sample, now):
            unready.add(pod.name)
            continue
        ready += 1
    ignored = {p.name for p in pods if p.deleting or p.phase == "Failed"}
    return ready, unready, missing, ignored


def _unready_for_cpu(pod: PodView, sample: Sample, now: float) -> bool:
    if pod.ready is None or pod.started is None or pod.ready_since is None:
        return True
    if pod.started + CPU_INITIALIZATION_PERIOD > now:
        return not pod.ready or sample.at < pod.ready_since + sample.window
    return not pod.ready and pod.started + INITIAL_READINESS_DELAY > pod.ready_since


def resource_replicas(current: int, pods: list[PodView], samples: dict[str, Sample], cpu: bool, now: float,
                      target_utilization: Optional[int] = None, target_average: Optional[int] = None) -> Proposal:
    """The count one Resource metric asks for (give exactly one of the targets). Raises
    MetricsError when no pod matches, no sample is usable, or a request is missing."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = _group(pods, samples, cpu, now)
    usable = {name: s.value for name, s in samples.items()
              if name not in ignored and name not in unready and any(p.name == name for p in pods)}
    if not usable:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    requests = _requests(pods) if target_utilization is not None else {}
    ratio_of = _utilization_ratio(requests, target_utilization) if target_utilization is not None \
        else _average_ratio(target_average)
    ratio, utilization = ratio_of(usable)
    average = math.ceil(sum(usable.values()) / len(usable))
    proposal = lambda replicas: Proposal(replicas, utilization, average)  # noqa: E731
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return proposal(current)
        return proposal(math.ceil(ratio * ready))
    filled = dict(usable)
    if missing and ratio < 1.0:
        for name in missing:
            filled[name] = (requests[name] * max(100, target_utilization) // 100 if target_utilization is not None
                            else target_average)
    elif missing and ratio > 1.0:
        filled.update({name: 0 for name in missing})
    if scale_up_with_unready:
        filled.update({name: 0 for name in unready})
    new_ratio, _ = ratio_of(filled)
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return proposal(current)
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return proposal(current)
    return proposal(replicas)


def _requests(pods: list[PodView]) -> dict[str, int]:
    missing = next((p for p in pods if p.request is None and not p.deleting and p.phase != "Failed"), None)
    if missing is not None:
        raise MetricsError(f"missing request for the resource in pod {missing.name}")
    return {p.name: p.request or 0 for p in pods}


def _utilization_ratio(requests: dict[str, int], target: int) -> Callable[[dict], tuple[float, int]]:
    def ratio(values: dict[str, int]) -> tuple[float, int]:
        requested = sum(requests.get(name, 0) for name in values)
        if requested <= 0:
            raise MetricsError("no metrics returned matched known pods")
        utilization = sum(values.values()) * 100 // requested
        return utilization / target, utilization
    return ratio


def _average_ratio(target: int) -> Callable[[dict], tuple[float, None]]:
    def ratio(values: dict[str, int]) -> tuple[float, None]:
        return sum(values.values()) / (target * len(values)), None
    return ratio


# --------------------------------------------------------------------------- normalization

@dataclass
class History:
    """What one autoscaler remembers between syncs: recommendations and scale events
    (``(time, replicas)`` and ``(time, change)``)."""

    recommendations: list = field(default_factory=list)
    ups: list = field(default_factory=list)
    downs: list = field(default_factory=list)

    def record(self, now: float, current: int, new: int, keep: float) -> None:
        """Remember a rescale from ``current`` to ``new`` (events older than ``keep`` go)."""
        self.ups = [e for e in self.ups if e[0] > now - keep]
        self.downs = [e for e in self.downs if e[0] > now - keep]
        (self.ups if new > current else self.downs).append((now, abs(new - current)))


def stabilized(history: History, now: float, desired: int, current: int, up_window: float,
               down_window: float) -> tuple[int, str, str]:
    """Record ``desired`` and return the stabilised recommendation with the AbleToScale reason
    and message. Recommendations older than both windows are forgotten."""
    keep = max(up_window, down_window)
    history.recommendations = [r for r in history.recommendations if r[0] > now - keep]
    history.recommendations.append((now, desired))
    up = min((r for t, r in history.recommendations if t > now - up_window), default=desired)
    down = max((r for t, r in history.recommendations if t > now - down_window), default=desired)
    up, down = min(up, desired), max(down, desired)
    recommendation = current
    if recommendation < up:
        recommendation = up
    if recommendation > down:
        recommendation = down
    if recommendation == desired:
        return recommendation, "ReadyForNewScale", "recommended size matches current size"
    if recommendation < desired:
        return recommendation, "ScaleUpStabilized", ("recent recommendations were lower than current one, "
                                                     "applying the lowest recent recommendation")
    return recommendation, "ScaleDownStabilized", ("recent recommendations were higher than current one, "
                                                   "applying the highest recent recommendation")


def _changed_within(events: list, period: float, now: float) -> int:
    return sum(change for at, change in events if at > now - period)


def scale_up_limit(current: int, history: History, rules: dict, now: float) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    pick = min if rules.get("selectPolicy") == "Min" else max
    proposals = []
    for policy in rules.get("policies") or []:
        period = policy.get("periodSeconds", 15)
        start = current - _changed_within(history.ups, period, now) + _changed_within(history.downs, period, now)
        if policy.get("type") == "Pods":
            proposals.append(start + policy.get("value", 0))
        else:
            proposals.append(math.ceil(start * (1 + policy.get("value", 0) / 100)))
    return pick(proposals) if proposals else current


def scale_down_limit(current: int, history: History, rules: dict, now: float) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    pick = max if rules.get("selectPolicy") == "Min" else min
    proposals = []
    for policy in rules.get("policies") or []:
        period = policy.get("periodSeconds", 15)
        start = current + _changed_within(history.downs, period, now) - _changed_within(history.ups, period, now)
        if policy.get("type") == "Pods":
            proposals.append(start - policy.get("value", 0))
        else:
            proposals.append(int(start * (1 - policy.get("value", 0) / 100)))
    return pick(proposals) if proposals else current


def rate_limited(history: History, now: float, current: int, desired: int, low: int, high: int,
                 behavior: dict) -> tuple[int, str, str]:
    """The count after the behavior's policies and the bounds, with the ScalingLimited reason."""
    if desired > current:
        limit = max(scale_up_limit(current, history, behavior.get("scaleUp") or {}, now), current)
        if high > limit:
            allowed, reason, message = limit, "ScaleUpLimit", ("the desired replica count is increasing faster "
                                                               "than the maximum scale rate")
        else:
            allowed, reason, message = high, "TooManyReplicas", ("the desired replica count is more than the "
                                                                 "maximum replica count")
        if desired > allowed:
            return allowed, reason, message
    elif desired < current:
        limit = min(scale_down_limit(current, history, behavior.get("scaleDown") or {}, now), current)
        if low < limit:
            allowed, reason, message = limit, "ScaleDownLimit", ("the desired replica count is decreasing faster "
                                                                 "than the maximum scale rate")
        else:
            allowed, reason, message = low, "TooFewReplicas", ("the desired replica count is less than the "
                                                               "minimum replica count")
        if desired < allowed:
            return allowed, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def default_limited(current: int, desired: int, low: int, high: int) -> tuple[int, str, str]:
    """Without a behavior: at most max(2 x current, 4) up, within min/maxReplicas."""
    up_limit = max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM)
    if high > up_limit:
        ceiling, reason, message = up_limit, "ScaleUpLimit", ("the desired replica count is increasing faster than "
                                                              "the maximum scale rate")
    else:
        ceiling, reason, message = high, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    if desired < low:
        return low, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > ceiling:
        return ceiling, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def longest_period(behavior: dict) -> float:
    """How long scale events matter: the longest policy period of the behavior."""
    periods = [p.get("periodSeconds", 15) for rules in (behavior.get("scaleUp"), behavior.get("scaleDown"))
               for p in ((rules or {}).get("policies") or [])]
    return float(max(periods, default=15))
