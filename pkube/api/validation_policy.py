"""Semantic checks of PodDisruptionBudgets (policy/v1) and HorizontalPodAutoscalers
(autoscaling/v2, and the autoscaling/v1 view of them), as Kubernetes' pkg/apis/policy/validation
and pkg/apis/autoscaling/validation do on create and update.

Registered in ``api.validation_specs.BY_KIND``; import that module (or ``api.validation``), not
this one first: this module takes its shared helpers from it.
"""

from __future__ import annotations

from pkube.api import causes
from pkube.api.quantity import QuantityError, parse_quantity
from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.api.validation_specs import _PERCENT_RE, _int_or_percent, as_dict, dict_items, is_int, one_of

UNHEALTHY_POD_EVICTION_POLICIES = ("IfHealthyBudget", "AlwaysAllow")
METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
TARGET_TYPES = ("AverageValue", "Utilization", "Value")
SELECT_POLICIES = ("Disabled", "Max", "Min")
POLICY_TYPES = ("Percent", "Pods")
MAX_STABILIZATION_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800


# --- PodDisruptionBudget ------------------------------------------------------------------------

def pod_disruption_budget(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        found.append(causes.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for name in ("minAvailable", "maxUnavailable"):
        found += _positive_int_or_percent(f"spec.{name}", spec.get(name))
    found += _selector("spec.selector", spec.get("selector"))
    found += one_of("spec.unhealthyPodEvictionPolicy", spec.get("unhealthyPodEvictionPolicy"),
                    UNHEALTHY_POD_EVICTION_POLICIES)
    return found


def _positive_int_or_percent(field: str, value) -> list:
    found = _int_or_percent(field, value)
    if isinstance(value, str) and _PERCENT_RE.fullmatch(value) and int(value[:-1]) > 100:
        found.append(causes.invalid(field, value, "must not be greater than 100%"))
    return found


def _selector(field: str, selector) -> list:
    if selector is None:
        return []
    try:
        label_selector_from_dict(selector)
    except SelectorError as error:
        return [causes.invalid(field, selector, str(error))]
    return []


# --- HorizontalPodAutoscaler --------------------------------------------------------------------

def horizontal_pod_autoscaler(obj: dict) -> list:
    """autoscaling/v2, or v1 (targetCPUUtilizationPercentage instead of metrics and behavior)."""
    spec = as_dict(obj.get("spec"))
    found = _scale_target_ref(as_dict(spec.get("scaleTargetRef")), "spec.scaleTargetRef")
    found += _replica_bounds(spec)
    if obj.get("apiVersion") == "autoscaling/v1":
        target = spec.get("targetCPUUtilizationPercentage")
        if is_int(target) and target < 1:
            found.append(causes.invalid("spec.targetCPUUtilizationPercentage", target, "must be greater than 0"))
        return found
    for _, metric, where in dict_items(spec.get("metrics"), "spec.metrics"):
        found += _metric(metric, where)
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for direction in ("scaleUp", "scaleDown"):
            if isinstance(behavior.get(direction), dict):
                found += _scaling_rules(behavior[direction], f"spec.behavior.{direction}")
    return found


def _scale_target_ref(ref: dict, path: str) -> list:
    found = []
    for name in ("kind", "name"):
        value = ref.get(name)
        if not value:
            found.append(causes.required(f"{path}.{name}"))
        elif isinstance(value, str) and ("/" in value or "%" in value or value in (".", "..")):
            found.append(causes.invalid(f"{path}.{name}", value, "may not contain '/' or '%' and may not be '.' or '..'"))
    return found


def _replica_bounds(spec: dict) -> list:
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    found = []
    if is_int(low) and low < 1:
        found.append(causes.invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if high is None:
        found.append(causes.required("spec.maxReplicas"))
    elif is_int(high) and high < 1:
        found.append(causes.invalid("spec.maxReplicas", high, "must be greater than 0"))
    if is_int(low) and is_int(high) and high < low:
        found.append(causes.invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    return found


def _metric(metric: dict, path: str) -> list:
    kind = metric.get("type")
    if kind is None:
        return [causes.required(f"{path}.type")]
    if kind not in METRIC_TYPES:
        return [causes.not_supported(f"{path}.type", kind, METRIC_TYPES)]
    source_field = kind[0].lower() + kind[1:]
    source = metric.get(source_field)
    if not isinstance(source, dict):
        return [causes.required(f"{path}.{source_field}", "must populate information for the given metric source")]
    if kind in ("Resource", "ContainerResource"):
        return _resource_source(source, f"{path}.{source_field}", kind == "ContainerResource")
    return _target(as_dict(source.get("target")), f"{path}.{source_field}.target")


def _resource_source(source: dict, path: str, per_container: bool) -> list:
    found = [] if source.get("name") else [causes.required(f"{path}.name")]
    if per_container and not source.get("container"):
        found.append(causes.required(f"{path}.container"))
    target = as_dict(source.get("target"))
    found += _target(target, f"{path}.target")
    if target.get("type") == "Value":
        found.append(causes.not_supported(f"{path}.target.type", "Value", ("AverageValue", "Utilization")))
    if target.get("averageUtilization") is None and target.get("averageValue") is None:
        found.append(causes.required(f"{path}.target.averageUtilization",
                                     "must set either a target resource utilization or a target resource value"))
    if target.get("averageUtilization") is not None and target.get("averageValue") is not None:
        found.append(causes.forbidden(f"{path}.target.averageValue",
                                      "may not set both a target resource utilization and a target resource value"))
    return found


def _target(target: dict, path: str) -> list:
    kind = target.get("type")
    found = one_of(f"{path}.type", kind, TARGET_TYPES, allow_missing=False)
    field = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}.get(kind)
    if field is not None and target.get(field) is None:
        found.append(causes.required(f"{path}.{field}", f"must set {field} when type is {kind}"))
    utilization = target.get("averageUtilization")
    if is_int(utilization) and utilization <= 0:
        found.append(causes.invalid(f"{path}.averageUtilization", utilization, "must be greater than 0"))
    for name in ("averageValue", "value"):
        found += _positive_quantity(f"{path}.{name}", target.get(name))
    return found


def _positive_quantity(field: str, value) -> list:
    if value is None:
        return []
    try:
        amount = parse_quantity(value)
    except QuantityError:
        return [causes.invalid(field, value, "quantities must match the regular expression "
                                             "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    return [] if amount > 0 else [causes.invalid(field, value, "must be positive")]


def _scaling_rules(rules: dict, path: str) -> list:
    found = []
    window = rules.get("stabilizationWindowSeconds")
    if is_int(window) and not 0 <= window <= MAX_STABILIZATION_SECONDS:
        found.append(causes.invalid(f"{path}.stabilizationWindowSeconds", window,
                                    f"must be less than or equal to {MAX_STABILIZATION_SECONDS}"
                                    if window > 0 else "must be greater than or equal to zero"))
    found += one_of(f"{path}.selectPolicy", rules.get("selectPolicy"), SELECT_POLICIES)
    for _, policy, where in dict_items(rules.get("policies"), f"{path}.policies"):
        found += one_of(f"{where}.type", policy.get("type"), POLICY_TYPES, allow_missing=False)
        value, period = policy.get("value"), policy.get("periodSeconds")
        if is_int(value) and value <= 0:
            found.append(causes.invalid(f"{where}.value", value, "must be greater than zero"))
        if is_int(period) and not 0 < period <= MAX_PERIOD_SECONDS:
            found.append(causes.invalid(f"{where}.periodSeconds", period,
                                        f"must be greater than zero and less than or equal to {MAX_PERIOD_SECONDS}"))
    return found
