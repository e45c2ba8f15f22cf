"""Pure helpers of the Deployment controller: hashes, revisions, rollout arithmetic, status.

- ``pod_template_hash(template, collision_count)``: FNV-32a of the template's
  canonical JSON (sorted keys, no ``pod-template-hash`` label) followed by the
  collision count, written as Kubernetes writes it (the decimal value mapped
  onto the alphabet "bcdfghjklmnpqrstvwxz2456789", so it is a safe label
  value and never a bad word). Stable across processes and Python versions;
  not byte-identical to Kubernetes' (which hashes Go's struct dump).
- ``resolve_fenceposts``: maxSurge rounds up, maxUnavailable down; both 0 → 1.
- The rolling-update steps (``new_rs_replicas``, ``old_scale_down_budget``)
  follow Kubernetes' rolloutRolling, over ReplicaSet dicts.
- ``deployment_status`` / ``progressing_condition`` compute what
  ``kubectl rollout status`` reads.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from typing import Optional

from pkube.client.timefmt import rfc3339
from pkube.controllers.podcontrol import owner_reference, parse_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NOT_COPIED_ANNOTATIONS = (REVISION, DESIRED_REPLICAS, MAX_REPLICAS, REVISION_HISTORY,
                          "kubectl.kubernetes.io/last-applied-configuration")
FNV_OFFSET, FNV_PRIME = 0x811C9DC5, 0x01000193


def fnv32a(data: bytes) -> int:
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


def without_hash_label(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    """See the module docstring."""
    data = json.dumps(without_hash_label(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(SAFE_ALPHABET[int(ch) % len(SAFE_ALPHABET)] for ch in str(fnv32a(data)))


def templates_equal(a: dict, b: dict) -> bool:
    """Equal ignoring the pod-template-hash label (and empty vs missing maps)."""
    return _normal(without_hash_label(a)) == _normal(without_hash_label(b))


def _normal(value):
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def scaled_value(value, total: int, round_up: bool) -> int:
    """An IntOrString of the API: an int, or "N%" of ``total`` rounded up or down."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%") or not text[:-1].isdigit():
        if text.isdigit():
            return int(text)
        raise ValueError(f"invalid value {value!r}: an integer or a percentage like 25%")
    exact = int(text[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge, max_unavailable, replicas: int) -> tuple[int, int]:
    """(surge, unavailable) as absolute numbers, rounded as Kubernetes rounds."""
    surge = scaled_value("25%" if max_surge is None else max_surge, replicas, round_up=True)
    unavailable = scaled_value("25%" if max_unavailable is None else max_unavailable, replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def rolling_params(deploy: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate deployment; (0, 0) for Recreate."""
    strategy = deploy["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    return resolve_fenceposts(rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"),
                              replicas_of(deploy))


def replicas_of(obj: dict) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_of(obj: dict, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def revision_of(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: list[dict]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def by_age(rss: list[dict]) -> list[dict]:
    """Oldest first (creationTimestamp, then name)."""
    return sorted(rss, key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]))


def find_new_rs(deploy: dict, rss: list[dict]) -> Optional[dict]:
    """The ReplicaSet whose template equals the deployment's (the oldest if several)."""
    template = deploy["spec"].get("template") or {}
    for rs in by_age(rss):
        if templates_equal(rs["spec"].get("template") or {}, template):
            return rs
    return None


def new_rs_object(deploy: dict, template_hash: str, replicas: int, revision: int) -> dict:
    """The ReplicaSet a deployment creates for its current template."""
    template = copy.deepcopy(deploy["spec"].get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
    selector = copy.deepcopy(deploy["spec"].get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
    meta = deploy["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_COPIED_ANNOTATIONS}
    annotations.update(rs_annotations(deploy, revision))
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{template_hash}", "namespace": meta["namespace"],
                         "labels": dict(template["metadata"]["labels"]), "annotations": annotations,
                         "ownerReferences": [owner_reference(deploy)]},
            "spec": {"replicas": replicas, "minReadySeconds": int(deploy["spec"].get("minReadySeconds") or 0),
                     "selector": selector, "template": template}}


def rs_annotations(deploy: dict, revision: Optional[int] = None) -> dict:
    """desired-replicas and max-replicas (and the revision when given) for a deployment's RS."""
    surge, _ = rolling_params(deploy)
    out = {DESIRED_REPLICAS: str(replicas_of(deploy)), MAX_REPLICAS: str(replicas_of(deploy) + surge)}
    if revision is not None:
        out[REVISION] = str(revision)
    return out


def is_scaling_event(deploy: dict, rss: list[dict]) -> bool:
    """spec.replicas changed since the active RSs were last sized (desired-replicas differs)."""
    desired = str(replicas_of(deploy))
    active = [rs for rs in rss if replicas_of(rs)]
    return any((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS) not in (None, desired)
               for rs in active)


def new_rs_replicas(deploy: dict, all_rss: list[dict], new_rs: Optional[dict]) -> int:
    """The replicas the new RS may have now (Kubernetes NewRSNewReplicas)."""
    replicas = replicas_of(deploy)
    current_new = replicas_of(new_rs) if new_rs else 0
    strategy = (deploy["spec"].get("strategy") or {}).get("type") or "RollingUpdate"
    if strategy == "Recreate":
        return replicas
    surge, _ = rolling_params(deploy)
    current = sum(replicas_of(rs) for rs in all_rss)
    if current >= replicas + surge:
        return current_new
    return min(current_new + replicas + surge - current, replicas)


def old_scale_down_budget(deploy: dict, all_rss: list[dict], new_rs: Optional[dict]) -> int:
    """How many old replicas may go now without dropping below replicas − maxUnavailable
    (Kubernetes' maxScaledDown in reconcileOldReplicaSets); may be <= 0."""
    _, unavailable = rolling_params(deploy)
    min_available = replicas_of(deploy) - unavailable
    all_count = sum(replicas_of(rs) for rs in all_rss)
    new_unavailable = (replicas_of(new_rs) - status_of(new_rs, "availableReplicas")) if new_rs else 0
    return all_count - min_available - new_unavailable


def available_surplus(deploy: dict, all_rss: list[dict]) -> int:
    """Available pods above replicas − maxUnavailable: how many healthy old pods may go."""
    _, unavailable = rolling_params(deploy)
    return sum(status_of(rs, "availableReplicas") for rs in all_rss) - (replicas_of(deploy) - unavailable)


def deployment_status(deploy: dict, all_rss: list[dict], new_rs: Optional[dict]) -> dict:
    """Counts of the status (conditions are added by the caller)."""
    available = sum(status_of(rs, "availableReplicas") for rs in all_rss)
    total = sum(replicas_of(rs) for rs in all_rss)
    return {"observedGeneration": deploy["metadata"].get("generation", 1),
            "replicas": sum(status_of(rs, "replicas") for rs in all_rss),
            "updatedReplicas": status_of(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(status_of(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available)}


def complete(deploy: dict, status: dict) -> bool:
    """Every replica updated and available, and no old one left (Kubernetes DeploymentComplete)."""
    replicas = replicas_of(deploy)
    return (status["updatedReplicas"] == replicas and status["replicas"] == replicas
            and status["availableReplicas"] == replicas
            and status["observedGeneration"] >= deploy["metadata"].get("generation", 1))


def find_condition(status: dict, kind: str) -> Optional[dict]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def condition(kind: str, status: str, reason: str, message: str, now: dt.datetime,
              previous: Optional[dict]) -> dict:
    """A condition; lastTransitionTime is kept when the status did not change."""
    stamp = rfc3339(now)
    transition = previous["lastTransitionTime"] if previous and previous.get("status") == status \
        and previous.get("lastTransitionTime") else stamp
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": transition,
            "reason": reason, "message": message}


def available_condition(deploy: dict, status: dict, now: dt.datetime, old: dict) -> dict:
    _, unavailable = rolling_params(deploy)
    previous = find_condition(old, "Available")
    if status["availableReplicas"] >= replicas_of(deploy) - unavailable:
        cond = condition("Available", "True", "MinimumReplicasAvailable",
                         "Deployment has minimum availability.", now, previous)
    else:
        cond = condition("Available", "False", "MinimumReplicasUnavailable",
                         "Deployment does not have minimum availability.", now, previous)
    return _keep_update_time(cond, previous)


def _keep_update_time(cond: dict, previous: Optional[dict]) -> dict:
    """An unchanged condition keeps its lastUpdateTime, so status writes stay quiet."""
    if previous and all(previous.get(k) == cond[k] for k in ("status", "reason", "message")):
        cond["lastUpdateTime"] = previous.get("lastUpdateTime") or cond["lastUpdateTime"]
    return cond


def progressing_condition(deploy: dict, status: dict, old: dict, new_rs: Optional[dict],
                          now: dt.datetime, moved: bool) -> Optional[dict]:
    """The Progressing condition (None without progressDeadlineSeconds). ``moved`` says the
    rollout made progress in this pass (new RS created or scaled, pods became available)."""
    deadline = deploy["spec"].get("progressDeadlineSeconds", 600)
    if deadline is None:
        return None
    previous = find_condition(old, "Progressing")
    name = new_rs["metadata"]["name"] if new_rs else deploy["metadata"]["name"]
    if deploy["spec"].get("paused"):
        return _keep_update_time(condition("Progressing", "Unknown", "DeploymentPaused",
                                           "Deployment is paused", now, previous), previous)
    if complete(deploy, status):
        return _keep_update_time(condition("Progressing", "True", "NewReplicaSetAvailable",
                                           f'ReplicaSet "{name}" has successfully progressed.', now,
                                           previous), previous)
    if moved or previous is None or previous.get("reason") in ("NewReplicaSetAvailable", "DeploymentPaused",
                                                                "DeploymentResumed"):
        return condition("Progressing", "True", "ReplicaSetUpdated",
                         f'ReplicaSet "{name}" is progressing.', now, previous)
    if previous.get("reason") == "ProgressDeadlineExceeded":
        return previous
    if seconds_left(previous, deadline, now) <= 0:
        return condition("Progressing", "False", "ProgressDeadlineExceeded",
                         f'ReplicaSet "{name}" has timed out progressing.', now, previous)
    return previous


def progressed(old: dict, new: dict) -> bool:
    """The rollout moved between two statuses (Kubernetes DeploymentProgressing)."""
    def old_count(s):
        return int(s.get("replicas") or 0) - int(s.get("updatedReplicas") or 0)
    return (new["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
            or old_count(new) < old_count(old)
            or new["readyReplicas"] > int(old.get("readyReplicas") or 0)
            or new["availableReplicas"] > int(old.get("availableReplicas") or 0))


def seconds_left(progressing: Optional[dict], deadline: int, now: dt.datetime) -> float:
    """Seconds until a progressing rollout passes its deadline (inf when unknown)."""
    since = parse_time((progressing or {}).get("lastUpdateTime"))
    if since is None:
        return math.inf
    return deadline - (now - since).total_seconds()
