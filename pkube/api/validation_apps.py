"""Semantic checks and defaults of DaemonSets, StatefulSets and ControllerRevisions (Kubernetes'
pkg/apis/apps/validation and apps/v1 defaults), in the shape of ``validation_specs``.

Create checks (``daemon_set``, ``stateful_set``, ``controller_revision``) are registered in
``validation_specs.BY_KIND``; update checks (``daemon_set_update``, ``stateful_set_update``)
in ``validation._UPDATE_BY_KIND``; defaults (``default_daemon_set``, ``default_stateful_set``)
in ``defaults._BY_KIND``. Each is pure and never raises on a malformed shape.
"""

from __future__ import annotations

import copy

from pkube.api import causes, names
from pkube.api.validation_specs import (_int_or_percent, _is_zero, _PERCENT_RE, _workload, as_dict, as_list,
                                  dict_items, is_int, non_negative, one_of, syntax)

DAEMONSET_STRATEGIES = ("OnDelete", "RollingUpdate")
STATEFULSET_STRATEGIES = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")
RETENTION_POLICIES = ("Delete", "Retain")
STATEFULSET_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
_STATEFULSET_UPDATE_MESSAGE = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                               "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' "
                               "and 'minReadySeconds' are forbidden")


# --- DaemonSet -------------------------------------------------------------------------------------

def daemon_set(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = _workload(obj, "daemonset")
    found += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    found += _daemon_set_strategy(as_dict(spec.get("updateStrategy")), "spec.updateStrategy")
    return found


def _daemon_set_strategy(strategy: dict, path: str) -> list:
    kind = strategy.get("type")
    found = one_of(f"{path}.type", kind, DAEMONSET_STRATEGIES)
    if kind != "RollingUpdate":
        return found
    rolling = as_dict(strategy.get("rollingUpdate"))
    surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
    found += _int_or_percent(f"{path}.rollingUpdate.maxSurge", surge)
    found += _int_or_percent(f"{path}.rollingUpdate.maxUnavailable", unavailable)
    has_surge, has_unavailable = not _is_zero(surge or 0), not _is_zero(unavailable or 0)
    if has_surge and has_unavailable:
        found.append(causes.invalid(f"{path}.rollingUpdate.maxSurge", surge,
                                    "may not be set when maxUnavailable is non-zero"))
    elif not has_surge and not has_unavailable:
        found.append(causes.required(f"{path}.rollingUpdate.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    for field, value in (("maxSurge", surge), ("maxUnavailable", unavailable)):
        if isinstance(value, str) and _PERCENT_RE.fullmatch(value) and int(value[:-1]) > 100:
            found.append(causes.invalid(f"{path}.rollingUpdate.{field}", value, "must not be greater than 100%"))
    return found


def daemon_set_update(new: dict, old: dict) -> list:
    return _selector_frozen(new, old)


def _selector_frozen(new: dict, old: dict) -> list:
    new_selector = as_dict(new.get("spec")).get("selector")
    old_selector = as_dict(old.get("spec")).get("selector")
    if old_selector is not None and new_selector != old_selector:
        return [causes.invalid("spec.selector", new_selector, "field is immutable")]
    return []


# --- StatefulSet -----------------------------------------------------------------------------------

def stateful_set(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    claim_names = [as_dict(t.get("metadata")).get("name") for _, t, _ in
                   dict_items(spec.get("volumeClaimTemplates"), "")]
    found = _workload(_with_claim_volumes(obj, claim_names), "statefulset")
    found += one_of("spec.podManagementPolicy", spec.get("podManagementPolicy"), POD_MANAGEMENT_POLICIES)
    found += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    found += non_negative("spec.ordinals.start", as_dict(spec.get("ordinals")).get("start"))
    found += _stateful_set_strategy(as_dict(spec.get("updateStrategy")), "spec.updateStrategy")
    policy = as_dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for field in ("whenDeleted", "whenScaled"):
        found += one_of(f"spec.persistentVolumeClaimRetentionPolicy.{field}", policy.get(field),
                        RETENTION_POLICIES)
    for index, name in enumerate(claim_names):
        where = f"spec.volumeClaimTemplates[{index}].metadata.name"
        found += [causes.required(where)] if not name else syntax(where, name, names.dns1123_subdomain)
    return found


def _with_claim_volumes(obj: dict, claim_names: list) -> dict:
    """``obj`` with a volume per claim template in its pod template, so that mounts of claims
    validate as the pods will have them."""
    template = as_dict(as_dict(obj.get("spec")).get("template"))
    pod_spec = as_dict(template.get("spec"))
    if not claim_names or not pod_spec:
        return obj
    obj = copy.deepcopy(obj)
    pod_spec = obj["spec"]["template"]["spec"]
    have = {as_dict(v).get("name") for v in as_list(pod_spec.get("volumes"))}
    extra = [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in claim_names
             if isinstance(n, str) and n and n not in have]
    pod_spec["volumes"] = as_list(pod_spec.get("volumes")) + extra
    return obj


def _stateful_set_strategy(strategy: dict, path: str) -> list:
    kind = strategy.get("type")
    found = one_of(f"{path}.type", kind, STATEFULSET_STRATEGIES)
    rolling = strategy.get("rollingUpdate")
    if rolling is None:
        return found
    if kind == "OnDelete":
        return found + [causes.invalid(f"{path}.rollingUpdate", rolling,
                                       "only allowed for updateStrategy 'RollingUpdate'")]
    rolling = as_dict(rolling)
    found += non_negative(f"{path}.rollingUpdate.partition", rolling.get("partition"))
    unavailable = rolling.get("maxUnavailable")
    found += _int_or_percent(f"{path}.rollingUpdate.maxUnavailable", unavailable)
    if is_int(unavailable) and unavailable < 1 or _is_zero(unavailable):
        found.append(causes.invalid(f"{path}.rollingUpdate.maxUnavailable", unavailable,
                                    "must be greater than or equal to 1"))
    return found


def stateful_set_update(new: dict, old: dict) -> list:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    frozen_new = {k: v for k, v in new_spec.items() if k not in STATEFULSET_UPDATABLE}
    frozen_old = {k: v for k, v in old_spec.items() if k not in STATEFULSET_UPDATABLE}
    if frozen_new != frozen_old:
        return [causes.forbidden("spec", _STATEFULSET_UPDATE_MESSAGE)]
    return []


# --- ControllerRevision ----------------------------------------------------------------------------

def controller_revision(obj: dict) -> list:
    revision = obj.get("revision")
    if revision is None:
        return [causes.required("revision")]
    return non_negative("revision", revision)


# --- defaults --------------------------------------------------------------------------------------

def default_daemon_set(obj: dict, default_template) -> None:
    """apps/v1 SetDefaults_DaemonSet; ``default_template(obj)`` defaults the pod template."""
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    default_template(obj)


def default_stateful_set(obj: dict, default_template) -> None:
    """apps/v1 SetDefaults_StatefulSet; ``default_template(obj)`` defaults the pod template."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for template in spec.get("volumeClaimTemplates") or []:
        if isinstance(template, dict):
            template.setdefault("apiVersion", "v1")
            template.setdefault("kind", "PersistentVolumeClaim")
            claim_spec = template.setdefault("spec", {})
            if isinstance(claim_spec, dict):
                claim_spec.setdefault("volumeMode", "Filesystem")
    default_template(obj)
