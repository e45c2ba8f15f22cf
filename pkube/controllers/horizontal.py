"""HorizontalPodAutoscaler controller (autoscaling/v2), as Kubernetes' podautoscaler does it.

Every ``sync_period`` seconds (``--horizontal-pod-autoscaler-sync-period``, 15 s), and when an
autoscaler changes, ``reconcile``:
1. reads the target's scale subresource (its replicas and pod selector);
2. outside min/maxReplicas, moves into them; with 0 replicas (and minReplicas > 0) scaling is
   disabled; otherwise asks each metric (Resource or ContainerResource, cpu or memory,
   Utilization or AverageValue, from metrics.k8s.io PodMetrics and the pods' requests; see
   controllers/horizontal_replicas)
   for a count and takes the largest, then stabilises it and limits its rate (spec.behavior,
   or without one a 5-minute scale-down window and at most max(2x, 4) up);
3. writes the new count to the scale subresource with a SuccessfulRescale Event, and the
   status: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime and the conditions
   AbleToScale, ScalingActive and ScalingLimited.
Metrics of type Pods, Object and External (custom and external metrics APIs) are reported
invalid (FailedGetResourceMetric); a target whose kind pkube does not serve is FailedGetScale.
"""

from __future__ import annotations

import logging
from typing import Optional

from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import Registry
from pkube.api.quantity import QuantityError, cpu_millicores, memory_bytes
from pkube.api.selectors import SelectorError, parse_label_selector
from pkube.client.errors import ApiError
from pkube.client.resources import HORIZONTALPODAUTOSCALERS, POD_METRICS, PODS
from pkube.client.store import index_by_namespace
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext, split_key
from pkube.controllers.horizontal_replicas import (DEFAULT_DOWNSCALE_WINDOW, History, MetricsError, PodView, Sample,
                                             default_limited, longest_period, rate_limited, resource_replicas,
                                             stabilized)
from pkube.controllers.podcontrol import parse_time, ready_condition

log = logging.getLogger(__name__)

DEFAULT_SYNC_PERIOD = 15.0


class HorizontalController(Controller):
    name = "horizontalpodautoscaling"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        super().__init__(ctx, workers)
        self.sync_period = float(ctx.options.get("horizontal_pod_autoscaler_sync_period") or DEFAULT_SYNC_PERIOD)
        self.registry = Registry()
        self.hpas = ctx.informers.informer(HORIZONTALPODAUTOSCALERS)
        self.pods = ctx.informers.informer(PODS, {"namespace": index_by_namespace})
        self.hpas.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self._forget)
        self.histories: dict[str, History] = {}

    def _forget(self, hpa: dict) -> None:
        self.histories.pop(f"{hpa['metadata'].get('namespace')}/{hpa['metadata']['name']}", None)

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.store.get(key)
        if hpa is None:
            self.histories.pop(key, None)
            return
        try:
            await Sync(self, key, deep_copy(hpa)).run()
        finally:
            self.queue.add_after(key, self.sync_period)

    def scale_resource(self, ref: dict):
        info = self.registry.by_api_version_kind(ref.get("apiVersion") or "", ref.get("kind") or "")
        if info is None or "scale" not in info.subresources:
            return None
        return info

    def pods_of(self, namespace: str, selector_text: str) -> list[dict]:
        selector = parse_label_selector(selector_text)
        return [p for p in self.pods.store.by_index("namespace", namespace)
                if selector.matches(p["metadata"].get("labels") or {})]


class Sync:
    """One sync of one autoscaler: the steps of ``reconcile``; conditions gather on ``status``."""

    def __init__(self, controller: HorizontalController, key: str, hpa: dict):
        self.c, self.key, self.hpa = controller, key, hpa
        self.namespace, _ = split_key(key)
        self.spec = hpa.get("spec") or {}
        self.old_status = deep_copy(hpa.get("status") or {})
        self.status = deep_copy(self.old_status)
        self.wall = controller.clock.wall()
        self.now = self.wall.timestamp()
        self.history = controller.histories.get(key)

    async def run(self) -> None:
        ref = self.spec.get("scaleTargetRef") or {}
        scale = await self._get_scale(ref)
        if scale is None:
            await self._write_status()
            return
        self._condition("AbleToScale", True, "SucceededGetScale",
                        "the HPA controller was able to get the target's current scale")
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        if self.history is None:
            self.history = self.c.histories[self.key] = History(recommendations=[(self.now, current)])
        desired, reason, metrics = await self._desired(current, scale)
        if desired is None:
            self._set_counts(current, current, metrics)
            await self._write_status()
            return
        if desired != current:
            await self._rescale(ref, scale, current, desired, reason)
        self._set_counts(current, desired, metrics)
        await self._write_status()

    async def _get_scale(self, ref: dict) -> Optional[dict]:
        info = self.c.scale_resource(ref)
        if info is None:
            message = f"the HPA controller was unable to get the target's current scale: no scale for {ref.get('kind')!r}"
            return self._fail("AbleToScale", "FailedGetScale", message)
        try:
            return await self.c.client.get(info, ref.get("name"), self.namespace, subresource="scale")
        except ApiError as err:
            return self._fail("AbleToScale", "FailedGetScale",
                              f"the HPA controller was unable to get the target's current scale: {err}")

    def _fail(self, condition: str, reason: str, message: str) -> None:
        self._condition(condition, False, reason, message)
        self.c.ctx.recorder.emit(self.hpa, "Warning", reason, message.split(": ", 1)[-1])
        return None

    async def _desired(self, current: int, scale: dict) -> tuple[Optional[int], str, list]:
        """The count to scale to (None: leave it, scaling inactive), the reason, currentMetrics."""
        low, high = int(self.spec.get("minReplicas") or 1), int(self.spec.get("maxReplicas") or 1)
        if current == 0 and low != 0:
            self._condition("ScalingActive", False, "ScalingDisabled",
                            "scaling is disabled since the replica count of the target is zero")
            return None, "", []
        if current > high:
            return high, "Current number of replicas above Spec.MaxReplicas", []
        if current < low:
            return low, "Current number of replicas below Spec.MinReplicas", []
        proposal, name, metrics = await self._from_metrics(current, (scale.get("status") or {}).get("selector") or "")
        if proposal is None:
            return None, "", metrics
        reason = f"{name} above target" if proposal > current else "All metrics below target"
        return self._normalized(current, proposal, low, high), reason, metrics

    async def _from_metrics(self, current: int, selector: str) -> tuple[Optional[int], str, list]:
        """The largest count the metrics ask for and its metric's name (None when none could
        say), and the currentMetrics of the status."""
        try:
            pods = self.c.pods_of(self.namespace, selector)
        except SelectorError as err:
            self._fail("ScalingActive", "InvalidSelector", f"the HPA target's scale has an invalid selector: {err}")
            return None, "", []
        samples = await self._samples(selector)
        best, best_name, statuses, errors = None, "", [], []
        for metric in self.spec.get("metrics") or []:
            try:
                replicas, name, status = self._metric(metric, current, pods, samples)
            except MetricsError as err:
                errors.append(str(err))
                self.c.ctx.recorder.emit(self.hpa, "Warning", "FailedGetResourceMetric", str(err))
                continue
            statuses.append(status)
            if best is None or replicas > best:
                best, best_name = replicas, name
        # all metrics invalid, or some invalid and the valid ones would scale down: hold
        if best is None or (errors and best < current):
            message = f"the HPA was unable to compute the replica count: {errors[0] if errors else 'no metrics'}"
            self._fail("ScalingActive", "FailedGetResourceMetric", message)
            self.c.ctx.recorder.emit(self.hpa, "Warning", "FailedComputeMetricsReplicas",
                                     f"invalid metrics ({len(errors)} invalid out of {len(errors) + len(statuses)}), "
                                     f"first error is: {errors[0] if errors else 'no metrics'}")
            return None, "", statuses
        self._condition("ScalingActive", True, "ValidMetricFound",
                        f"the HPA was able to successfully calculate a replica count from {best_name}")
        return best, best_name, statuses

    async def _samples(self, selector: str) -> Optional[list]:
        try:
            listed = await self.c.client.list(POD_METRICS, self.namespace, label_selector=selector or None)
        except ApiError as err:
            log.info("hpa %s: metrics: %s", self.key, err)
            return None
        return listed.get("items") or []

    def _metric(self, metric: dict, current: int, pods: list[dict], samples: Optional[list]):
        """(replicas, the metric's name for messages, its currentMetrics entry) of a Resource
        or ContainerResource metric (one container's usage and request); MetricsError."""
        kind = metric.get("type")
        if kind not in ("Resource", "ContainerResource"):
            raise MetricsError(f"metric type {kind!r} is not supported by pkube's autoscaler")
        field = "resource" if kind == "Resource" else "containerResource"
        source = metric.get(field) or {}
        resource, target, container = source.get("name"), source.get("target") or {}, source.get("container")
        if resource not in ("cpu", "memory"):
            raise MetricsError(f"failed to get {resource} resource metric: only cpu and memory are served")
        usage = pod_usage(samples or [], resource, container)
        if not usage:
            raise MetricsError(f"failed to get {resource} utilization: unable to get metrics for resource "
                               f"{resource}: no metrics returned from resource metrics API")
        views = [pod_view(p, resource, container) for p in pods]
        cpu = resource == "cpu"
        what = f"{resource} resource" if container is None else f"{resource} container resource"
        if target.get("type") == "Utilization":
            proposal = resource_replicas(current, views, usage, cpu, self.now,
                                         target_utilization=int(target.get("averageUtilization") or 0))
            measured = {"averageUtilization": proposal.utilization, "averageValue": _quantity(proposal.average, cpu)}
            name = f"{what} utilization (percentage of request)"
        else:
            wanted = _amount(target.get("averageValue"), cpu)
            proposal = resource_replicas(current, views, usage, cpu, self.now, target_average=wanted)
            measured = {"averageValue": _quantity(proposal.average, cpu)}
            name = what
        status = {"name": resource, **({"container": container} if container is not None else {}), "current": measured}
        return proposal.replicas, name, {"type": kind, field: status}

    def _normalized(self, current: int, desired: int, low: int, high: int) -> int:
        behavior = self.spec.get("behavior")
        up_window = float(((behavior or {}).get("scaleUp") or {}).get("stabilizationWindowSeconds") or 0)
        down = ((behavior or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds")
        down_window = float(DEFAULT_DOWNSCALE_WINDOW if down is None else down)
        recommendation, reason, message = stabilized(self.history, self.now, desired, current, up_window, down_window)
        self._condition("AbleToScale", True, reason, message)
        if behavior is None:
            limited, reason, message = default_limited(current, recommendation, low, high)
        else:
            limited, reason, message = rate_limited(self.history, self.now, current, recommendation, low, high, behavior)
        self._condition("ScalingLimited", limited != recommendation, reason, message)
        return limited

    async def _rescale(self, ref: dict, scale: dict, current: int, desired: int, reason: str) -> None:
        info = self.c.scale_resource(ref)
        scale = {**scale, "spec": {**(scale.get("spec") or {}), "replicas": desired}}
        try:
            await self.c.client.replace(info, scale, self.namespace, subresource="scale")
        except ApiError as err:
            self._fail("AbleToScale", "FailedUpdateScale",
                       f"the HPA controller was unable to update the target scale: {err}")
            await self._write_status()
            raise
        self._condition("AbleToScale", True, "SucceededRescale",
                        f"the HPA controller was able to update the target scale to {desired}")
        self.c.ctx.recorder.emit(self.hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
        behavior = self.spec.get("behavior")
        if behavior is not None:
            self.history.record(self.now, current, desired, longest_period(behavior))
        self.status["lastScaleTime"] = rfc3339(self.wall)

    def _set_counts(self, current: int, desired: int, metrics: list) -> None:
        self.status.update(currentReplicas=current, desiredReplicas=desired)
        if metrics:
            self.status["currentMetrics"] = metrics
        else:
            self.status.pop("currentMetrics", None)

    def _condition(self, kind: str, ok: bool, reason: str, message: str) -> None:
        conditions = self.status.get("conditions") or []
        wanted = "True" if ok else "False"
        old = next((c for c in conditions if c.get("type") == kind), None)
        since = old["lastTransitionTime"] if old and old.get("status") == wanted and old.get("lastTransitionTime") \
            else rfc3339(self.wall)
        new = {"type": kind, "status": wanted, "lastTransitionTime": since, "reason": reason, "message": message}
        if old is None:
            conditions.append(new)
        else:
            conditions[conditions.index(old)] = new
        self.status["conditions"] = conditions

    async def _write_status(self) -> None:
        self.status["observedGeneration"] = self.hpa["metadata"].get("generation", 1)
        self.status.setdefault("currentReplicas", 0)
        self.status.setdefault("desiredReplicas", 0)
        if self.status == self.old_status:
            return
        await self.c.client.replace(HORIZONTALPODAUTOSCALERS, {**self.hpa, "status": self.status}, self.namespace, subresource="status")


# --------------------------------------------------------------------------- reading pods and metrics

def pod_view(pod: dict, resource: str, container: Optional[str] = None) -> PodView:
    """What the replica calculator needs of ``pod`` for ``resource`` (of one ``container``)."""
    status = pod.get("status") or {}
    ready = ready_condition(pod)
    return PodView(name=pod["metadata"]["name"], phase=status.get("phase") or "Pending",
                   deleting=bool(pod["metadata"].get("deletionTimestamp")),
                   ready=None if ready is None else ready.get("status") == "True",
                   ready_since=_seconds(ready.get("lastTransitionTime")) if ready else None,
                   started=_seconds(status.get("startTime")), request=pod_request(pod, resource, container))


def pod_request(pod: dict, resource: str, only: Optional[str] = None) -> Optional[int]:
    """The summed request of ``resource`` of the pod's containers (or of the container named
    ``only``); None when one lacks it."""
    total = 0
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if only is None or c.get("name") == only]
    if not containers:
        return None
    for container in containers:
        request = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        if request is None:
            return None
        try:
            total += _amount(request, resource == "cpu")
        except MetricsError:
            return None
    return total


def pod_usage(items: list[dict], resource: str, only: Optional[str] = None) -> dict[str, Sample]:
    """PodMetrics -> per-pod Sample (summed over containers, or the container named ``only``;
    pods lacking it left out)."""
    usage: dict[str, Sample] = {}
    for item in items:
        containers = [c for c in item.get("containers") or [] if only is None or c.get("name") == only]
        values = [(c.get("usage") or {}).get(resource) for c in containers]
        if not containers or any(v is None for v in values):
            continue
        try:
            value = sum(_amount(v, resource == "cpu") for v in values)
        except MetricsError:
            continue
        usage[item["metadata"]["name"]] = Sample(value, _seconds(item.get("timestamp")) or 0.0,
                                                 _window(item.get("window")))
    return usage


def _amount(quantity, cpu: bool) -> int:
    try:
        return cpu_millicores(quantity) if cpu else memory_bytes(quantity)
    except QuantityError as err:
        raise MetricsError(str(err)) from None


def _quantity(amount: int, cpu: bool) -> str:
    return f"{amount}m" if cpu else str(amount)


def _seconds(stamp: Optional[str]) -> Optional[float]:
    when = parse_time(stamp)
    return when.timestamp() if when is not None else None


def _window(text) -> float:
    """A PodMetrics window ("10s", "1m0s") in seconds; 0 when unreadable."""
    if not isinstance(text, str):
        return 0.0
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}.get(char, 0)
            number = ""
    return total


def new_controller(ctx: ControllerContext) -> HorizontalController:
    return HorizontalController(ctx)
