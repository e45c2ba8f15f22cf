"""``pkubectl rollout status|history|undo|restart|pause|resume`` for Deployments."""

from __future__ import annotations

import datetime
import time
from typing import Callable, Optional

from kubectl.errors import CliError

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
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Print status lines (each once) until done; raises CliError after ``timeout`` seconds."""
    deadline, last = clock() + timeout, None
    while True:
        line, done = rollout_status(read())
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
    from kubectl.printers import align

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
