"""``pkubectl rollout status|history|undo|restart|pause|resume`` for Deployments; status,
history, undo and restart for DaemonSets and StatefulSets (from their ControllerRevisions)."""

from __future__ import annotations

import datetime
import time
from typing import Callable, Optional

from pkube.kubectl.errors import CliError

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TEMPLATE_HASH_LABEL = "pod-template-hash"


def rollout_status(deployment: dict) -> tuple[str, bool]:
    """kubectl's status line for one Deployment and whether the rollout is done.

    Follows DeploymentStatusViewer: the controller must have observed the
    latest generation; ProgressDeadlineExceeded is an error; then updated,
    total and available replicas must all reach the desired count.
    """
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    name = meta.get("name", "")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return "Waiting for deployment spec update to be observed...", False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise CliError(f"deployment \"{name}\" exceeded its progress deadline")
    desired = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < desired:
        return (f"Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} "
                f"new replicas have been updated..."), False
    if total > updated:
        return (f"Waiting for deployment \"{name}\" rollout to finish: {total - updated} old replicas "
                f"are pending termination..."), False
    if available < updated:
        return (f"Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} "
                f"updated replicas are available..."), False
    return f"deployment \"{name}\" successfully rolled out", True


def wait_rollout(read: Callable[[], dict], out, timeout: float, watch: bool = True,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 viewer: Optional[Callable[[dict], tuple[str, bool]]] = None) -> None:
    """Print status lines (each once) until done; raises CliError after ``timeout`` seconds.
    ``viewer`` reads one object (default: a Deployment's ``rollout_status``)."""
    deadline, last = clock() + timeout, None
    viewer = viewer or rollout_status
    while True:
        line, done = viewer(read())
        if line != last:
            out.write(line + "\n")
            out.flush()
            last = line
        if done or not watch:
            return
        if clock() >= deadline:
            raise CliError("timed out waiting for the condition")
        sleep(0.5)


def owned_replicasets(deployment: dict, replicasets: list[dict]) -> list[dict]:
    """The ReplicaSets a Deployment owns, oldest revision first."""
    uid = (deployment.get("metadata") or {}).get("uid")
    owned = [rs for rs in replicasets
             if any(ref.get("uid") == uid for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    return sorted(owned, key=revision_of)


def revision_of(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def history_text(kind_name: str, replicasets: list[dict]) -> str:
    """``rollout history``: REVISION / CHANGE-CAUSE per owned ReplicaSet."""
    rows = [["REVISION", "CHANGE-CAUSE"]]
    for rs in replicasets:
        cause = ((rs.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/change-cause", "<none>")
        rows.append([str(revision_of(rs)), cause])
    from pkube.kubectl.printers import align

    return f"{kind_name}\n" + align(rows) + "\n"


def undo_patch(deployment: dict, replicasets: list[dict], to_revision: Optional[int] = None) -> dict:
    """The patch that rolls a Deployment's template back to a previous ReplicaSet's."""
    current = revision_of(deployment)
    candidates = [rs for rs in replicasets if revision_of(rs) != current]
    if to_revision:
        candidates = [rs for rs in candidates if revision_of(rs) == to_revision]
        if not candidates:
            raise CliError(f"unable to find specified revision {to_revision} in history")
    if not candidates:
        raise CliError("no rollout history found for deployment "
                       f"\"{(deployment.get('metadata') or {}).get('name', '')}\"")
    template = dict((candidates[-1].get("spec") or {}).get("template") or {})
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(TEMPLATE_HASH_LABEL, None)
    template["metadata"] = dict(template.get("metadata") or {}, labels=labels)
    return {"spec": {"template": template}}


def restart_patch(now: Optional[datetime.datetime] = None) -> dict:
    """The patch ``rollout restart`` sends: a fresh restartedAt annotation on the template."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: moment.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}}


# -- DaemonSets and StatefulSets: status viewers and ControllerRevision history ----------------

def daemonset_status(ds: dict) -> tuple[str, bool]:
    """kubectl's DaemonSetStatusViewer: only RollingUpdate; updated, then available pods."""
    meta, spec, status = ds.get("metadata") or {}, ds.get("spec") or {}, ds.get("status") or {}
    if ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate":
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return "Waiting for daemon set spec update to be observed...", False
    name, desired = meta.get("name", ""), status.get("desiredNumberScheduled", 0)
    updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    if updated < desired:
        return (f"Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} "
                f"new pods have been updated..."), False
    if available < desired:
        return (f"Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} "
                f"updated pods are available..."), False
    return f"daemon set \"{name}\" successfully rolled out", True


def statefulset_status(sts: dict) -> tuple[str, bool]:
    """kubectl's StatefulSetStatusViewer: ready replicas, then the partition or the revisions."""
    meta, spec, status = sts.get("metadata") or {}, sts.get("spec") or {}, sts.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    if not status.get("observedGeneration") or meta.get("generation", 0) > status["observedGeneration"]:
        return "Waiting for statefulset spec update to be observed...", False
    replicas = spec.get("replicas", 1)
    if status.get("readyReplicas", 0) < replicas:
        return f"Waiting for {replicas - status.get('readyReplicas', 0)} pods to be ready...", False
    updated = status.get("updatedReplicas", 0)
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if strategy.get("rollingUpdate") is not None and partition is not None:
        if updated < replicas - partition:
            return (f"Waiting for partitioned roll out to finish: {updated} out of {replicas - partition} "
                    f"new pods have been updated..."), False
        return f"partitioned roll out complete: {updated} new pods have been updated...", True
    if status.get("updateRevision") != status.get("currentRevision"):
        return (f"waiting for statefulset rolling update to complete {updated} pods at revision "
                f"{status.get('updateRevision')}..."), False
    return (f"statefulset rolling update complete {status.get('currentReplicas', 0)} pods at revision "
            f"{status.get('currentRevision')}..."), True


STATUS_VIEWERS = {"Deployment": rollout_status, "DaemonSet": daemonset_status, "StatefulSet": statefulset_status}


def owned_revisions(owner: dict, revisions: list[dict]) -> list[dict]:
    """The ControllerRevisions ``owner`` controls, oldest revision first."""
    uid = (owner.get("metadata") or {}).get("uid")
    owned = [r for r in revisions if any(ref.get("uid") == uid and ref.get("controller")
                                         for ref in (r.get("metadata") or {}).get("ownerReferences") or [])]
    return sorted(owned, key=lambda r: int(r.get("revision") or 0))


def revisions_history_text(kind_name: str, revisions: list[dict]) -> str:
    """``rollout history`` of a DaemonSet or StatefulSet: REVISION / CHANGE-CAUSE."""
    from pkube.kubectl.printers import align

    rows = [["REVISION", "CHANGE-CAUSE"]]
    for revision in revisions:
        cause = ((revision.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/change-cause")
        rows.append([str(revision.get("revision") or 0), cause or "<none>"])
    return f"{kind_name}\n" + align(rows) + "\n"


def revision_undo_patch(revisions: list[dict], to_revision: Optional[int] = None) -> tuple[dict, int]:
    """The strategic merge patch that ``rollout undo`` sends to a DaemonSet or StatefulSet (the
    revision's data, as kubectl does) and the revision's number: ``to_revision``, else the one
    before the latest."""
    if to_revision:
        chosen = [r for r in revisions if int(r.get("revision") or 0) == to_revision]
        if not chosen:
            raise CliError(f"unable to find specified revision {to_revision} in history")
    else:
        if len(revisions) < 2:
            raise CliError("no last revision to roll back to")
        chosen = [revisions[-2]]
    return dict(chosen[0].get("data") or {}), int(chosen[0].get("revision") or 0)


def template_matches(owner: dict, patch: dict) -> bool:
    """Whether ``owner``'s template already equals the one ``patch`` would put back."""
    wanted = dict((patch.get("spec") or {}).get("template") or {})
    wanted.pop("$patch", None)
    return wanted == ((owner.get("spec") or {}).get("template") or {})
