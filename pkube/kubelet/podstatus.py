"""A pod's status from what the kubelet observed: pure functions, no I/O.

The pod worker hands in one `ContainerView` per container (the runtime's record of its
current and previous instance, the reason it waits, its probe results); `pod_status`
returns the whole `status` Kubernetes shows: phase, conditions, container statuses,
addresses, startTime, qosClass. The phase follows the kubelet's getPhase.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from pkube.api.quantity import cpu_millicores, memory_bytes

CONTAINER_ID_SCHEME = "pkube://"


@dataclass
class ContainerView:
    """What the kubelet knows of one container of a pod.

    `current`/`previous` are runtime records (runtime.state.ContainerState) of the newest
    and the one-before instance, or None. `waiting` is (reason, message) when the worker
    holds the container back (ContainerCreating, CrashLoopBackOff, ErrImagePull, ...); it wins
    over an exited `current` (a container waiting to restart shows Waiting with the last
    exit as lastState)."""

    name: str
    image: str
    current: Any = None
    previous: Any = None
    restart_count: int = 0
    waiting: Optional[tuple[str, str]] = None
    ready: bool = False
    started: Optional[bool] = None
    messages: Optional[dict] = None     # instance id -> termination message


def _message_of(view: ContainerView, record) -> str:
    return (view.messages or {}).get(record.id, "")


def k8s_time(runtime_time: str) -> str:
    """The runtime's nanosecond RFC 3339 time as Kubernetes' metav1.Time (seconds)."""
    return runtime_time[:19] + "Z" if runtime_time and not runtime_time.startswith("0001") else ""


def running_for(record) -> float:
    """Seconds since a running record started (0 when unknown)."""
    import datetime as dt
    text = k8s_time(record.started_at)
    if not text:
        return 0.0
    started = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return max(0.0, (dt.datetime.now(dt.timezone.utc) - started).total_seconds())


def container_id(record) -> str:
    return CONTAINER_ID_SCHEME + record.id


def terminated_state(record, message: str = "") -> dict:
    """`state.terminated` of an exited runtime record; `message` is what the container left
    as its termination message."""
    if record.error:
        reason = "StartError"
    elif record.oom_killed:
        reason = "OOMKilled"
    else:
        reason = "Completed" if record.exit_code == 0 else "Error"
    out = {"exitCode": record.exit_code, "reason": reason,
           "startedAt": k8s_time(record.started_at) or None, "finishedAt": k8s_time(record.finished_at) or None,
           "containerID": container_id(record)}
    message = record.error or message
    if message:
        out["message"] = message
    return {"terminated": {k: v for k, v in out.items() if v is not None}}


def is_running(record) -> bool:
    return record is not None and record.status == "running"


def has_exited(record) -> bool:
    return record is not None and record.status == "exited"


def container_state(view: ContainerView) -> dict:
    if view.waiting is not None:
        reason, message = view.waiting
        return {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    if is_running(view.current):
        return {"running": {"startedAt": k8s_time(view.current.started_at)}}
    if has_exited(view.current):
        return terminated_state(view.current, _message_of(view, view.current))
    return {"waiting": {"reason": "ContainerCreating"}}


def last_state(view: ContainerView) -> dict:
    """The previous termination: the current instance's when it waits to restart, else the
    previous instance's."""
    if view.waiting is not None and has_exited(view.current):
        return terminated_state(view.current, _message_of(view, view.current))
    if has_exited(view.previous):
        return terminated_state(view.previous, _message_of(view, view.previous))
    return {}


def container_status(view: ContainerView) -> dict:
    record = view.current
    out = {"name": view.name, "state": container_state(view), "lastState": last_state(view),
           "ready": view.ready and is_running(record) and view.waiting is None,
           "restartCount": view.restart_count, "image": view.image,
           "imageID": f"sha256:{record.image_id}" if record is not None and record.image_id else "",
           "started": bool(view.started) and is_running(record) and view.waiting is None}
    if record is not None:
        out["containerID"] = container_id(record)
    return out


def _done(view: ContainerView) -> bool:
    return view.waiting is None and has_exited(view.current) and view.current.exit_code == 0


def init_pending(init_views: list[ContainerView]) -> list[str]:
    """Names of init containers that have not succeeded yet."""
    return [v.name for v in init_views if not _done(v)]


def pod_phase(pod: dict, init_views: list[ContainerView], views: list[ContainerView]) -> str:
    """Kubernetes' getPhase: Pending until every init container succeeded and every
    container started; then Running, Succeeded or Failed by restartPolicy."""
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    for view in init_views:
        if policy == "Never" and view.waiting is None and has_exited(view.current) and view.current.exit_code != 0:
            return "Failed"
    if init_pending(init_views):
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for view in views:
        if is_running(view.current) and view.waiting is None:
            running += 1
        elif has_exited(view.current):
            stopped += 1
            succeeded += view.current.exit_code == 0 and view.waiting is None
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"


def _condition(kind: str, ok: bool, now: str, previous: dict, reason: str = "", message: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(kind) or {}
    since = old.get("lastTransitionTime") if old.get("status") == status else None
    out = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since or now}
    if not ok and reason:
        out["reason"], out["message"] = reason, message
    return out


def pod_conditions(pod: dict, phase: str, sandbox_ready: bool, init_views, views, now: str) -> list[dict]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled."""
    previous = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    pending = init_pending(init_views)
    unready = [v.name for v in views if not container_status(v)["ready"]]
    if phase in ("Succeeded", "Failed"):
        ready_reason, ready_message = "PodCompleted", ""
        all_ready = False
    else:
        ready_reason, ready_message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
        all_ready = not unready
    initialized_ok = not pending or phase == "Succeeded"
    return [
        _condition("PodReadyToStartContainers", sandbox_ready, now, previous),
        _condition("Initialized", initialized_ok, now, previous, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending)}]"),
        _condition("Ready", all_ready, now, previous, ready_reason, ready_message),
        _condition("ContainersReady", all_ready, now, previous, ready_reason, ready_message),
        _condition("PodScheduled", True, now, previous),
    ]


def qos_class(pod: dict) -> str:
    """Guaranteed when every container's cpu and memory limits equal its requests, BestEffort
    when nothing is requested or limited, Burstable otherwise."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            request = requests.get(name, limit)
            if limit is None or not _same_quantity(name, limit, request):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _same_quantity(name: str, a, b) -> bool:
    convert = cpu_millicores if name == "cpu" else memory_bytes
    try:
        return convert(a) == convert(b)
    except (ValueError, ArithmeticError):
        return False


def pod_status(pod: dict, *, init_views: list[ContainerView], views: list[ContainerView],
               pod_ip: str, host_ip: str, sandbox_ready: bool, start_time: str, now: str,
               phase: Optional[str] = None, reason: str = "", message: str = "") -> dict:
    """The pod's status as the kubelet writes it; `phase` overrides the computed one (a pod
    failed by activeDeadlineSeconds or refused at admission)."""
    phase = phase or pod_phase(pod, init_views, views)
    if init_pending(init_views):   # app containers wait for the init containers, as kubectl shows
        views = [v if v.current is not None or v.waiting is not None
                 else dataclasses.replace(v, waiting=("PodInitializing", "")) for v in views]
    status = {"phase": phase, "conditions": pod_conditions(pod, phase, sandbox_ready, init_views, views, now),
              "hostIP": host_ip, "hostIPs": [{"ip": host_ip}] if host_ip else [],
              "startTime": start_time, "qosClass": qos_class(pod),
              "containerStatuses": [container_status(v) for v in views]}
    if init_views:
        status["initContainerStatuses"] = [container_status(v) for v in init_views]
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status


def without_times(status: dict) -> dict:
    """`status` without the condition timestamps: two statuses equal under this need no write."""
    conds = [{k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
             for c in status.get("conditions") or []]
    return {**status, "conditions": conds}
