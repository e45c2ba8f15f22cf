"""HorizontalPodAutoscaler defaults and the autoscaling/v1 <-> v2 conversion (pure).

HPAs are stored as autoscaling/v2. autoscaling/v1 (what ``kubectl autoscale`` of kubectl
<= 1.32 posts) only has ``targetCPUUtilizationPercentage``; as in Kubernetes, what v1 cannot
say (other metrics, behavior, conditions, other current metrics) travels in annotations of the
v1 view and comes back from them on a v1 write, so a v1 client round-trips a v2 object without
loss. Difference: the annotations hold the v2 JSON shapes (Kubernetes writes v1's MetricSpec).
"""

from __future__ import annotations

import json

from pkube.api.jsonvalue import deep_copy

DEFAULT_CPU_UTILIZATION = 80
METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
_ANNOTATIONS = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION)


def default_scale_up() -> dict:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_scale_down() -> dict:
    """stabilizationWindowSeconds stays unset: the controller's flag (300 s) decides."""
    return {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_horizontal_pod_autoscaler(obj: dict) -> None:
    """In place: minReplicas 1, status.desiredReplicas (and v1's currentReplicas) 0; for v2, a CPU target of 80% when no metric is given, and the
    missing parts of a behavior that is given (a missing behavior stays missing)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    status = obj.get("status")
    if isinstance(status, dict):            # the required status fields (0 on a new object)
        status.setdefault("desiredReplicas", 0)
    if obj.get("apiVersion") == "autoscaling/v1":
        if isinstance(status, dict):
            status.setdefault("currentReplicas", 0)
        return
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for direction, make in (("scaleUp", default_scale_up), ("scaleDown", default_scale_down)):
            rules = behavior.setdefault(direction, {})
            for key, value in make().items():
                if rules.get(key) is None:
                    rules[key] = value


def cpu_utilization_metric(percent: int) -> dict:
    return {"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}


def _is_cpu_utilization(metric: dict) -> bool:
    resource = metric.get("resource") or {}
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and (resource.get("target") or {}).get("type") == "Utilization")


# --- v2 -> v1 -------------------------------------------------------------------------------

def to_v1(obj: dict) -> dict:
    """The autoscaling/v1 view of a stored (v2) HPA; a new dict."""
    obj = deep_copy(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    metrics = spec.get("metrics") or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    v1_spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    if cpu is not None:
        v1_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"].get("averageUtilization")
    _annotate(annotations, METRICS_ANNOTATION, [m for m in metrics if m is not cpu])
    _annotate(annotations, BEHAVIOR_ANNOTATION, spec.get("behavior"))
    current = status.get("currentMetrics") or []
    current_cpu = next((m for m in current if m.get("type") == "Resource"
                        and (m.get("resource") or {}).get("name") == "cpu"), None)
    v1_status = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                        "desiredReplicas") if k in status}
    v1_status.setdefault("currentReplicas", 0)
    v1_status.setdefault("desiredReplicas", 0)
    utilization = ((current_cpu or {}).get("resource") or {}).get("current", {}).get("averageUtilization")
    if utilization is not None:
        v1_status["currentCPUUtilizationPercentage"] = utilization
    _annotate(annotations, CURRENT_METRICS_ANNOTATION, [m for m in current if m is not current_cpu])
    _annotate(annotations, CONDITIONS_ANNOTATION, status.get("conditions"))
    obj["apiVersion"], obj["spec"], obj["status"] = "autoscaling/v1", v1_spec, v1_status
    _set_annotations(obj, annotations)
    return obj


def _annotate(annotations: dict, key: str, value) -> None:
    if value:
        annotations[key] = json.dumps(value, separators=(",", ":"))


def _set_annotations(obj: dict, annotations: dict) -> None:
    md = obj.setdefault("metadata", {})
    if annotations:
        md["annotations"] = annotations
    else:
        md.pop("annotations", None)


# --- v1 -> v2 -------------------------------------------------------------------------------

def to_v2(obj: dict) -> dict:
    """A v1 HPA as it is stored (v2), its carrying annotations folded back; a new dict."""
    obj = deep_copy(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    carried = {key: _load(annotations.pop(key, None)) for key in _ANNOTATIONS}
    v2_spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    metrics = list(carried[METRICS_ANNOTATION] or [])
    target = spec.get("targetCPUUtilizationPercentage")
    if target is not None or not metrics:   # v1 without a target: the default CPU target
        metrics.insert(0, cpu_utilization_metric(DEFAULT_CPU_UTILIZATION if target is None else target))
    v2_spec["metrics"] = metrics
    if carried[BEHAVIOR_ANNOTATION]:
        v2_spec["behavior"] = carried[BEHAVIOR_ANNOTATION]
    v2_status = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                        "desiredReplicas") if k in status}
    current = list(carried[CURRENT_METRICS_ANNOTATION] or [])
    if status.get("currentCPUUtilizationPercentage") is not None:
        current.insert(0, {"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]}}})
    if current:
        v2_status["currentMetrics"] = current
    if carried[CONDITIONS_ANNOTATION]:
        v2_status["conditions"] = carried[CONDITIONS_ANNOTATION]
    obj["apiVersion"], obj["spec"], obj["status"] = "autoscaling/v2", v2_spec, v2_status
    _set_annotations(obj, annotations)
    return obj


def _load(text):
    """An annotation's JSON; None when absent or not JSON (a hand-edited annotation is dropped)."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
