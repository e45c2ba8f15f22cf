"""Side effects of workload controllers behind one small interface, plus pure helpers.

- ``PodControl`` creates pods from a template with a controller reference,
  deletes pods, and patches ownerReferences (adopt / release). A fake with the
  same methods serves unit tests (Kubernetes' PodControlInterface).
- ``claim(...)`` is Kubernetes' ControllerRefManager: of the candidates, keep
  the ones we control and that still match, adopt matching orphans, release
  the ones that no longer match. Used by ReplicaSets (pods) and Deployments
  (ReplicaSets). An informer indexed by ``index_by_controller`` hands it just
  the owner's objects and the orphans (``claim_candidates``), not the namespace.
- ``slow_start(...)``: creates in batches of growing size, as every workload
  controller issues them.
- Pod predicates: active, ready, available (minReadySeconds), and the order
  in which a scale-down deletes pods (``deletion_rank``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Callable, Optional

from pkube.client.errors import NotFound
from pkube.client.resources import PODS

TERMINAL_PHASES = ("Succeeded", "Failed")
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
CONTROLLER_INDEX = "controller-uid"
ORPHANS = "orphans/"


def owner_reference(owner: dict, controller: bool = True) -> dict:
    """The ownerReference a controller puts on its dependents (blockOwnerDeletion set)."""
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": controller, "blockOwnerDeletion": True}


def controller_ref(obj: dict) -> Optional[dict]:
    """The ownerReference with controller=true, or None for an orphan."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def object_from_template(template: dict, owner: dict, kind: str, api_version: str) -> dict:
    """A new object of ``kind`` from a pod template (labels, annotations, spec), owned
    by ``owner`` and named ``<owner name>-<random>`` by the apiserver."""
    tmeta = template.get("metadata") or {}
    meta = {"generateName": owner["metadata"]["name"] + "-",
            "namespace": owner["metadata"].get("namespace"),
            "ownerReferences": [owner_reference(owner)]}
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            meta[field] = copy.deepcopy(tmeta[field])
    return {"apiVersion": api_version, "kind": kind, "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


class PodControl:
    """Pod writes of the ReplicaSet controller. Errors propagate (NotFound on delete excepted)."""

    def __init__(self, client):
        self.client = client

    async def create_pod(self, namespace: str, template: dict, owner: dict) -> dict:
        pod = object_from_template(template, owner, "Pod", "v1")
        return await self.client.create(PODS, pod, namespace)

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self.client.delete(PODS, name, namespace)
        except NotFound:
            pass


def index_by_controller(obj: dict) -> list[str]:
    """Index function (``CONTROLLER_INDEX``): the uid of the object's controller, or
    ``orphans/<namespace>`` for an object without one (uids never look like that)."""
    ref = controller_ref(obj)
    if ref is None:
        return [ORPHANS + (obj["metadata"].get("namespace") or "")]
    return [ref["uid"]] if ref.get("uid") else []


def claim_candidates(store, owner: dict) -> list[dict]:
    """The objects of ``store`` (indexed by ``index_by_controller`` under ``CONTROLLER_INDEX``)
    that ``claim`` may keep for ``owner``: those it controls and the orphans of its namespace."""
    return (store.by_index(CONTROLLER_INDEX, owner["metadata"]["uid"])
            + store.by_index(CONTROLLER_INDEX, ORPHANS + (owner["metadata"].get("namespace") or "")))


async def slow_start(count: int, make, initial: int = 1) -> tuple[int, Optional[Exception]]:
    """Call ``make()`` ``count`` times in batches of ``initial``, twice that, ... (concurrent
    within a batch; Kubernetes' slowStartBatch); stop after the first batch with a failure.
    (calls that succeeded, first error or None)."""
    done, batch = 0, initial
    while done < count:
        size = min(batch, count - done)
        results = await asyncio.gather(*(make() for _ in range(size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        done += size - len(errors)
        if errors:
            return done, errors[0]
        batch *= 2
    return done, None


async def set_owner_references(client, resource, obj: dict, refs: list) -> dict:
    """Replace ``obj``'s ownerReferences, guarded by its uid and resourceVersion (409 on a race)."""
    meta = obj["metadata"]
    patch = {"metadata": {"ownerReferences": refs, "uid": meta["uid"],
                          "resourceVersion": meta.get("resourceVersion")}}
    return await client.patch(resource, meta["name"], patch, meta.get("namespace"))


async def claim(client, resource, owner: dict, candidates: list[dict],
                matches: Callable[[dict], bool]) -> list[dict]:
    """The candidates ``owner`` controls after adopting matching orphans and releasing
    owned objects that no longer match. Orphans are not adopted by an owner being deleted.
    API errors propagate (the caller retries); objects gone meanwhile are skipped."""
    uid = owner["metadata"]["uid"]
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    owned = []
    for obj in candidates:
        ref = controller_ref(obj)
        if ref is not None and ref.get("uid") != uid:
            continue
        if ref is not None:
            if matches(obj):
                owned.append(obj)
            elif not obj["metadata"].get("deletionTimestamp"):
                await _ignore_gone(_release(client, resource, obj, uid))
        elif matches(obj) and not deleting and not obj["metadata"].get("deletionTimestamp"):
            adopted = await _ignore_gone(_adopt(client, resource, owner, obj))
            if adopted is not None:
                owned.append(adopted)
    return owned


async def _adopt(client, resource, owner: dict, obj: dict) -> dict:
    refs = list(obj["metadata"].get("ownerReferences") or []) + [owner_reference(owner)]
    return await set_owner_references(client, resource, obj, refs)


async def _release(client, resource, obj: dict, uid: str) -> dict:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
    return await set_owner_references(client, resource, obj, refs)


async def _ignore_gone(coro) -> Optional[dict]:
    try:
        return await coro
    except NotFound:
        return None


def is_active(pod: dict) -> bool:
    """Counts toward replicas: not terminated, not being deleted."""
    return ((pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
            and not pod["metadata"].get("deletionTimestamp"))


def ready_condition(pod: dict) -> Optional[dict]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return None


def is_ready(pod: dict) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def parse_time(value: Optional[str]) -> Optional[dt.datetime]:
    """An RFC 3339 timestamp of the API; None when absent or unparsable."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def available_in(pod: dict, min_ready_seconds: int, now: dt.datetime) -> Optional[float]:
    """0 if ``pod`` is available now, the seconds until it will be if it stays ready,
    None if it is not ready."""
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = parse_time(ready_condition(pod).get("lastTransitionTime"))
    if since is None:
        return 0.0
    return max(0.0, min_ready_seconds - (now - since).total_seconds())


def is_available(pod: dict, min_ready_seconds: int, now: dt.datetime) -> bool:
    return available_in(pod, min_ready_seconds, now) == 0.0


def deletion_rank(pod: dict) -> tuple:
    """Sort key: pods to delete first sort first (Kubernetes' ActivePods order):
    unscheduled, then pending/unknown, not ready, lowest pod-deletion-cost, ready
    most recently, most restarts, newest."""
    status = pod.get("status") or {}
    ready = is_ready(pod)
    ready_since = (ready_condition(pod) or {}).get("lastTransitionTime") or "" if ready else ""
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    created = pod["metadata"].get("creationTimestamp") or ""
    return (bool((pod.get("spec") or {}).get("nodeName")), PHASE_RANK.get(status.get("phase"), 0),
            ready, deletion_cost(pod), _descending(ready_since), -restarts, _descending(created))


def deletion_cost(pod: dict) -> int:
    """The controller.kubernetes.io/pod-deletion-cost annotation (lower goes first; 0 if absent or bad)."""
    value = (pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _descending(text: str) -> tuple:
    """A key that sorts later timestamps first."""
    return tuple(-ord(ch) for ch in text)
