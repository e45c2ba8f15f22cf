"""Pure logic of the Job controller: what one sync of a Job decides, given its pods and the time.

``plan_job(job, pods, now, backoff)`` returns a ``JobPlan``: the status to write, the pods to
create (one entry per pod: its completion index, or None for NonIndexed Jobs), the active pods
to delete, the condition that finishes the Job (if any) and when to look again. The controller
(pkube/controllers/job.py) only carries the plan out, so every rule below is tested without an API:

- counts come from the pods that exist (Kubernetes' tracking before pod finalizers): succeeded
  and failed pods are kept until the Job goes, so they are counted at every sync; an Indexed
  Job also keeps ``status.completedIndexes``, so a completed index is never run again;
- failures: failed pods that the podFailurePolicy does not Ignore, plus the container
  restarts of active pods when restartPolicy is OnFailure; more than backoffLimit fails the
  Job (BackoffLimitExceeded); a FailJob rule fails it at once (PodFailurePolicy);
- back-off: after failures, replacement pods wait base * 2^(n-1) seconds (capped, 6 min by
  default) after the last failure, n the failures since the last success (Kubernetes'
  backoffRecord);
- activeDeadlineSeconds counts from status.startTime (DeadlineExceeded); suspend deletes
  the active pods and clears startTime.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

from pkube.client.timefmt import rfc3339
from pkube.controllers.podcontrol import is_active, is_ready, object_from_template, parse_time, deletion_rank

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
DEFAULT_BACKOFF_BASE = 10.0
DEFAULT_BACKOFF_CAP = 360.0
DISRUPTION_TARGET = "DisruptionTarget"


@dataclass(frozen=True)
class Backoff:
    """The delay before re-creating pods after failures: ``base`` doubling, at most ``cap`` (s)."""

    base: float = DEFAULT_BACKOFF_BASE
    cap: float = DEFAULT_BACKOFF_CAP

    def delay(self, failures: int) -> float:
        """Seconds to wait after the last of ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * 2 ** min(failures - 1, 30))


@dataclass
class JobPlan:
    """What one sync does. ``create``: one entry per pod to create (its index, or None)."""

    status: dict
    create: list = field(default_factory=list)
    delete: list = field(default_factory=list)
    finished: Optional[dict] = None          # the Complete / Failed condition added now
    requeue_after: Optional[float] = None


# ---------------------------------------------------------------- small readers

def finished_condition(job: dict) -> Optional[dict]:
    """The Complete or Failed condition with status True, None while the Job runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond
    return None


def is_indexed(job: dict) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def completion_index(pod: dict) -> Optional[int]:
    """The pod's completion index (annotation, else label); None when absent or not a number."""
    meta = pod.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(INDEX_LABEL)
    try:
        index = int(text)
    except (TypeError, ValueError):
        return None
    return index if index >= 0 else None


def parse_indexes(text: Optional[str]) -> set[int]:
    """"1,3-5" -> {1, 3, 4, 5}; bad parts are skipped."""
    found: set[int] = set()
    for part in (text or "").split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            continue
        found.update(range(first, last + 1))
    return found


def format_indexes(indexes) -> str:
    """{1, 3, 4, 5} -> "1,3-5" (Kubernetes' completedIndexes format)."""
    parts, ordered = [], sorted(indexes)
    start = prev = None
    for index in ordered + [None]:
        if start is not None and (index is None or index != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if index is not None and start is None:
            start = index
        prev = index
    return ",".join(parts)


def finish_time(pod: dict) -> Optional[dt.datetime]:
    """When a terminated pod finished: its containers' latest finishedAt, else the time of its
    latest condition change, else its start; None if nothing says."""
    status = pod.get("status") or {}
    ends = [parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for c in status.get("containerStatuses") or []]
    ends = [t for t in ends if t is not None]
    if ends:
        return max(ends)
    changes = [parse_time(c.get("lastTransitionTime")) for c in status.get("conditions") or []]
    changes = [t for t in changes if t is not None]
    return max(changes) if changes else parse_time(status.get("startTime"))


def condition(kind: str, reason: str, message: str, now: dt.datetime, status: str = "True") -> dict:
    stamp = rfc3339(now)
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastProbeTime": stamp, "lastTransitionTime": stamp}


# ---------------------------------------------------------------- podFailurePolicy

def failure_policy_action(job: dict, pod: dict) -> tuple[Optional[str], Optional[str]]:
    """(action, message) of the first podFailurePolicy rule matching failed ``pod``:
    "FailJob", "Ignore", "Count" or "FailIndex"; (None, None) when no rule matches."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for number, rule in enumerate(rules):
        message = _rule_matches(rule, pod)
        if message is not None:
            return rule.get("action"), f"{message} matching {rule.get('action')} rule at index {number}"
    return None, None


def _rule_matches(rule: dict, pod: dict) -> Optional[str]:
    """What matched (for the condition message), None if the rule does not match."""
    exit_codes = rule.get("onExitCodes")
    if exit_codes:
        return _exit_code_matches(exit_codes, pod)
    for pattern in rule.get("onPodConditions") or []:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get("status", "True"):
                return f"Pod {_pod_name(pod)} has condition {cond['type']}"
    return None


def _exit_code_matches(requirement: dict, pod: dict) -> Optional[str]:
    values = set(requirement.get("values") or [])
    operator, wanted = requirement.get("operator"), requirement.get("containerName")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if wanted and status.get("name") != wanted:
            continue
        code = ((status.get("state") or {}).get("terminated") or {}).get("exitCode")
        if code is None or code == 0:
            continue
        if (operator == "In" and code in values) or (operator == "NotIn" and code not in values):
            return f"Container {status.get('name')} for pod {_pod_name(pod)} failed with exit code {code}"
    return None


def _pod_name(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# ---------------------------------------------------------------- one sync

@dataclass
class _Counts:
    active: list
    succeeded: list
    failed: list               # counted failures (policy Ignore left out)
    fail_job: Optional[str]    # the message of a FailJob match
    restarts: int


def _count(job: dict, pods: list[dict]) -> _Counts:
    active = [p for p in pods if is_active(p)]
    succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    failed, fail_job = [], None
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Failed":
            continue
        action, message = failure_policy_action(job, pod)
        if action == "Ignore":
            continue
        if action == "FailJob" and fail_job is None:
            fail_job = message
        failed.append(pod)
    restarts = 0
    if _template_spec(job).get("restartPolicy") == "OnFailure":
        restarts = sum(c.get("restartCount", 0) for p in active
                       for c in (p.get("status") or {}).get("containerStatuses") or [])
    return _Counts(active, succeeded, failed, fail_job, restarts)


def _template_spec(job: dict) -> dict:
    return ((job.get("spec") or {}).get("template") or {}).get("spec") or {}


def plan_job(job: dict, pods: list[dict], now: dt.datetime, backoff: Backoff = Backoff()) -> JobPlan:
    """One sync of ``job`` whose (controlled) pods are ``pods``; see the module docstring."""
    spec = job.get("spec") or {}
    status = copy.deepcopy(job.get("status") or {})
    counts = _count(job, pods)
    completed = _completed_indexes(job, status, counts.succeeded)
    plan = JobPlan(status)
    if finished_condition(job) is not None:
        plan.delete = counts.active
        _write_counts(plan, counts, completed, job)
        return plan
    if spec.get("suspend"):
        return _suspended(job, plan, counts, completed, now)
    _resume(status, now)
    failure = _failure(job, counts, status, now)
    if failure is not None:
        return _finish(job, plan, counts, completed, condition("Failed", *failure, now), now)
    if _is_complete(job, counts, completed):
        done = condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods", now)
        status["completionTime"] = rfc3339(now)
        return _finish(job, plan, counts, completed, done, now)
    _manage(job, plan, counts, completed, now, backoff)
    _write_counts(plan, counts, completed, job)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and status.get("startTime"):
        left = deadline - (now - parse_time(status["startTime"])).total_seconds()
        plan.requeue_after = left if plan.requeue_after is None else min(left, plan.requeue_after)
    return plan


def _completed_indexes(job: dict, status: dict, succeeded: list[dict]) -> set[int]:
    if not is_indexed(job):
        return set()
    completions = int((job.get("spec") or {}).get("completions") or 0)
    done = parse_indexes(status.get("completedIndexes"))
    done.update(i for i in map(completion_index, succeeded) if i is not None)
    return {i for i in done if i < completions}


def _succeeded(job: dict, counts: _Counts, completed: set[int]) -> int:
    return len(completed) if is_indexed(job) else len(counts.succeeded)


def _write_counts(plan: JobPlan, counts: _Counts, completed: set[int], job: dict) -> None:
    deleted = {id(p) for p in plan.delete}
    remaining = [p for p in counts.active if id(p) not in deleted]
    status = plan.status
    status["active"] = len(remaining)
    status["ready"] = sum(1 for p in remaining if is_ready(p))
    status["succeeded"] = _succeeded(job, counts, completed)
    status["failed"] = len(counts.failed)
    if is_indexed(job):
        status["completedIndexes"] = format_indexes(completed)


def _suspended(job: dict, plan: JobPlan, counts: _Counts, completed: set[int], now: dt.datetime) -> JobPlan:
    plan.delete = counts.active
    status = plan.status
    status.pop("startTime", None)
    _set_condition(status, condition("Suspended", "JobSuspended", "Job suspended", now))
    _write_counts(plan, counts, completed, job)
    return plan


def _resume(status: dict, now: dt.datetime) -> None:
    """A running Job has a startTime; one that was suspended says it resumed."""
    status.setdefault("startTime", rfc3339(now))
    suspended = _find_condition(status, "Suspended")
    if suspended is not None and suspended.get("status") == "True":
        _set_condition(status, condition("Suspended", "JobResumed", "Job resumed", now, status="False"))


def _failure(job: dict, counts: _Counts, status: dict, now: dt.datetime) -> Optional[tuple[str, str]]:
    """(reason, message) when the Job must fail now, None otherwise."""
    spec = job.get("spec") or {}
    if counts.fail_job is not None:
        return "PodFailurePolicy", counts.fail_job
    if len(counts.failed) + counts.restarts > int(spec.get("backoffLimit", 6)):
        return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))
    if deadline is not None and started is not None and (now - started).total_seconds() >= deadline:
        return "DeadlineExceeded", "Job was active longer than specified deadline"
    return None


def _is_complete(job: dict, counts: _Counts, completed: set[int]) -> bool:
    completions = (job.get("spec") or {}).get("completions")
    if is_indexed(job):
        return len(completed) >= int(completions or 0)
    if completions is None:
        return bool(counts.succeeded) and not counts.active
    return len(counts.succeeded) >= int(completions)


def _finish(job: dict, plan: JobPlan, counts: _Counts, completed: set[int], cond: dict,
            now: dt.datetime) -> JobPlan:
    plan.delete = counts.active
    plan.finished = cond
    _set_condition(plan.status, cond)
    _write_counts(plan, counts, completed, job)
    return plan


def _manage(job: dict, plan: JobPlan, counts: _Counts, completed: set[int], now: dt.datetime,
            backoff: Backoff) -> None:
    """Fill plan.create / plan.delete toward the wanted number of active pods."""
    if is_indexed(job):
        _manage_indexed(job, plan, counts, completed)
    else:
        _manage_counted(job, plan, counts)
    if plan.create:
        wait = _backoff_left(counts, now, backoff)
        if wait > 0:
            plan.create, plan.requeue_after = [], wait


def _parallelism(job: dict) -> int:
    value = (job.get("spec") or {}).get("parallelism")
    return 1 if value is None else int(value)


def _manage_counted(job: dict, plan: JobPlan, counts: _Counts) -> None:
    completions = (job.get("spec") or {}).get("completions")
    active = len(counts.active)
    if completions is None:
        wanted = active if counts.succeeded else _parallelism(job)
    else:
        wanted = min(_parallelism(job), max(0, int(completions) - len(counts.succeeded)))
    if active > wanted:
        plan.delete = sorted(counts.active, key=deletion_rank)[:active - wanted]
    else:
        plan.create = [None] * (wanted - active)


def _manage_indexed(job: dict, plan: JobPlan, counts: _Counts, completed: set[int]) -> None:
    """One active pod per index that is neither completed nor running; extras are deleted."""
    completions = int((job.get("spec") or {}).get("completions") or 0)
    running: dict[int, dict] = {}
    for pod in sorted(counts.active, key=deletion_rank, reverse=True):
        index = completion_index(pod)
        if index is None or index >= completions or index in completed or index in running:
            plan.delete.append(pod)
        else:
            running[index] = pod
    room = _parallelism(job) - len(running)
    if room < 0:
        victims = sorted(running.values(), key=deletion_rank)[:-room]
        plan.delete += victims
        return
    pending = [i for i in range(completions) if i not in completed and i not in running]
    plan.create = pending[:room]


def _backoff_left(counts: _Counts, now: dt.datetime, backoff: Backoff) -> float:
    """Seconds still to wait before replacing failed pods (0: go ahead)."""
    last_success = max((t for t in map(finish_time, counts.succeeded) if t), default=None)
    failures = [t for t in map(finish_time, counts.failed) if t is not None]
    recent = [t for t in failures if last_success is None or t > last_success]
    if not recent:
        return 0.0
    waited = (now - max(recent)).total_seconds()
    return max(0.0, backoff.delay(len(recent)) - waited)


def _find_condition(status: dict, kind: str) -> Optional[dict]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _set_condition(status: dict, cond: dict) -> None:
    """Add or replace the condition of cond's type; an unchanged status keeps its transition time."""
    conditions = status.setdefault("conditions", [])
    old = _find_condition(status, cond["type"])
    if old is None:
        conditions.append(cond)
    elif old.get("status") != cond["status"] or old.get("reason") != cond["reason"]:
        conditions[conditions.index(old)] = cond


# ---------------------------------------------------------------- pods of a Job

def pod_for_job(job: dict, index: Optional[int]) -> dict:
    """A new pod of ``job`` (owned by it, named <job>-[<index>-]<random>); with an index, the
    completion-index annotation and label, JOB_COMPLETION_INDEX from the downward API, and the
    hostname <job>-<index>."""
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    pod = object_from_template(template, job, "Pod", "v1")
    if index is None:
        return pod
    name = job["metadata"]["name"]
    meta = pod["metadata"]
    meta["generateName"] = f"{name}-{index}-"
    meta.setdefault("annotations", {})[INDEX_ANNOTATION] = str(index)
    meta.setdefault("labels", {})[INDEX_LABEL] = str(index)
    spec = pod["spec"]
    spec.setdefault("hostname", f"{name}-{index}")
    env = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        variables = container.setdefault("env", [])
        if not any(v.get("name") == INDEX_ENV for v in variables):
            variables.append(copy.deepcopy(env))
    return pod
