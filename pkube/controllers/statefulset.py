"""StatefulSet controller: pods with stable names and storage, in order, and their rollouts.

Per StatefulSet key, ``reconcile``:
1. claims its pods (selected by the selector and named ``<set>-<ordinal>``)
   and its ControllerRevisions (``controllers.history``); the update revision
   is the one of the current template, the current revision the one named by
   ``status.currentRevision`` (the update revision at first);
2. unless the set is being deleted, ``manage`` walks the ordinals as
   Kubernetes' stateful_set_control does: ordinals in [start, start+replicas)
   get a pod (with its PersistentVolumeClaims made first), failed pods are
   deleted to be made again, then pods beyond the range are deleted highest
   first, then RollingUpdate deletes the highest-ordinal pod of an old
   revision at or above ``partition`` (one at a time, waiting for health).
   ``OrderedReady`` stops at the first pod that is missing, terminating or
   not yet available (so pods start in order and go in reverse order);
   ``Parallel`` creates and deletes without waiting. A missing pod takes the
   current revision below the partition and the update revision at or above;
3. writes status (replicas, readyReplicas, availableReplicas, currentReplicas,
   updatedReplicas, the revisions, observedGeneration); a RollingUpdate whose
   every pod is updated and ready makes the update revision current;
4. deletes revisions beyond revisionHistoryLimit that no pod uses.

Pods are ``<set>-<ordinal>`` with ``hostname`` = the name, ``subdomain`` =
``spec.serviceName`` (the governing headless Service gives them DNS names),
labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index``
and ``controller-revision-hash`` (the revision's name, as upstream). Each
volumeClaimTemplate T gives the pod a volume T bound to the claim
``T-<set>-<ordinal>``, made before the pod and never deleted with it; the
persistentVolumeClaimRetentionPolicy gives claims ownerReferences as upstream
does: the set (whenDeleted: Delete) and, on scale-down, the condemned pod
(whenScaled: Delete), so the garbage collector removes them then.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import Optional

from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import PERSISTENTVOLUMECLAIMS, PODS, STATEFULSETS
from pkube.client.store import index_by_namespace, object_key
from pkube.controllers import history
from pkube.controllers.base import Controller, ControllerContext, PermanentError
from pkube.controllers.podcontrol import (CONTROLLER_INDEX, available_in, claim, claim_candidates, controller_ref,
                                    index_by_controller, is_ready, owner_reference)

log = logging.getLogger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
ORDINAL_RE = re.compile(r"^(.*)-([0-9]+)$")
TERMINAL_PHASES = ("Succeeded", "Failed")


# -- pure helpers -----------------------------------------------------------------

def parent_and_ordinal(pod: dict) -> tuple[Optional[str], int]:
    """(set name, ordinal) from a pod's name; (None, -1) when it is not ``<name>-<n>``."""
    match = ORDINAL_RE.match(pod["metadata"].get("name") or "")
    return (match.group(1), int(match.group(2))) if match else (None, -1)


def ordinal_of(pod: dict) -> int:
    return parent_and_ordinal(pod)[1]


def is_member(sts: dict, pod: dict) -> bool:
    return parent_and_ordinal(pod)[0] == sts["metadata"]["name"]


def replicas_of(sts: dict) -> int:
    value = sts["spec"].get("replicas")
    return 1 if value is None else int(value)


def ordinals(sts: dict) -> range:
    """The ordinals that should have a pod: [start, start + replicas)."""
    start = int((sts["spec"].get("ordinals") or {}).get("start") or 0)
    return range(start, start + replicas_of(sts))


def pod_name(sts: dict, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template_name: str, sts: dict, ordinal: int) -> str:
    return f"{template_name}-{sts['metadata']['name']}-{ordinal}"


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_failed(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod)


def partition_of(sts: dict) -> int:
    """The RollingUpdate partition (0 when absent; ordinals below it keep the current revision)."""
    rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
    return int(rolling.get("partition") or 0)


def strategy_of(sts: dict) -> str:
    return (sts["spec"].get("updateStrategy") or {}).get("type") or "RollingUpdate"


def is_monotonic(sts: dict) -> bool:
    """OrderedReady (the default): one pod at a time, in order."""
    return sts["spec"].get("podManagementPolicy") != "Parallel"


def split_pods(sts: dict, pods: list[dict]) -> tuple[dict[int, dict], list[dict]]:
    """({ordinal: pod} inside the range, the pods outside it, highest ordinal first)."""
    wanted = ordinals(sts)
    replicas = {ordinal_of(p): p for p in pods if ordinal_of(p) in wanted}
    condemned = sorted((p for p in pods if ordinal_of(p) not in wanted), key=ordinal_of, reverse=True)
    return replicas, condemned


def revision_for(sts: dict, ordinal: int, current: dict, update: dict) -> dict:
    """The revision a new pod of ``ordinal`` is made from (Kubernetes newVersionedStatefulSetPod):
    the current one below the partition of a RollingUpdate, the update one otherwise."""
    if strategy_of(sts) == "RollingUpdate" and ordinal < partition_of(sts):
        return current
    return update


def new_pod(sts: dict, ordinal: int, revision: dict) -> dict:
    """The pod of ``ordinal`` from ``revision``'s template, with its identity and claims."""
    template = history.revision_template(revision)
    tmeta = template.get("metadata") or {}
    name = pod_name(sts, ordinal)
    labels = dict(tmeta.get("labels") or {})
    labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
                   history.HASH_LABEL: revision["metadata"]["name"]})
    meta = {"name": name, "namespace": sts["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [owner_reference(sts)]}
    if tmeta.get("annotations"):
        meta["annotations"] = copy.deepcopy(tmeta["annotations"])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    spec["volumes"] = claim_volumes(sts, ordinal, spec.get("volumes") or [])
    if not spec["volumes"]:
        spec.pop("volumes")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def claim_volumes(sts: dict, ordinal: int, volumes: list[dict]) -> list[dict]:
    """The pod's volumes: one per claim template (replacing a template volume of that name)."""
    templates = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []]
    kept = [v for v in volumes if v.get("name") not in templates]
    return kept + [{"name": t, "persistentVolumeClaim": {"claimName": claim_name(t, sts, ordinal)}}
                   for t in templates]


def retention_policy(sts: dict) -> tuple[str, str]:
    """(whenDeleted, whenScaled), each Retain or Delete."""
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def new_claims(sts: dict, ordinal: int) -> list[dict]:
    """The PersistentVolumeClaims of ``ordinal``, labelled with the set's matchLabels and owned
    by the set when whenDeleted is Delete."""
    match_labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
    claims = []
    for template in sts["spec"].get("volumeClaimTemplates") or []:
        meta = copy.deepcopy(template.get("metadata") or {})
        meta["name"] = claim_name(meta["name"], sts, ordinal)
        meta["namespace"] = sts["metadata"]["namespace"]
        meta["labels"] = dict(meta.get("labels") or {}, **match_labels)
        meta["ownerReferences"] = claim_owner_refs(sts, [], None)
        if not meta["ownerReferences"]:
            meta.pop("ownerReferences")
        claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                       "spec": copy.deepcopy(template.get("spec") or {})})
    return claims


def claim_owner_refs(sts: dict, refs: list[dict], condemned: Optional[dict]) -> list[dict]:
    """A claim's ownerReferences under the retention policy (Kubernetes'
    updateClaimOwnerRefForSetAndPod): other owners kept; ``condemned`` (a pod being scaled
    away) alone when whenScaled is Delete, else the set when whenDeleted is Delete; references
    to other pods of the set (an earlier scale-down) dropped."""
    when_deleted, when_scaled = retention_policy(sts)
    uid = sts["metadata"]["uid"]
    kept = [r for r in refs if r.get("uid") != uid
            and not (r.get("kind") == "Pod" and (r.get("name") or "").startswith(sts["metadata"]["name"] + "-"))]
    if condemned is not None and when_scaled == "Delete":
        kept.append(_plain_ref(condemned))
    elif when_deleted == "Delete":
        kept.append(_plain_ref(sts))
    return kept


def _plain_ref(owner: dict) -> dict:
    ref = owner_reference(owner, controller=False)
    ref.pop("blockOwnerDeletion")
    ref["apiVersion"] = owner.get("apiVersion") or ("v1" if owner.get("kind") == "Pod" else "apps/v1")
    ref["kind"] = owner.get("kind") or "Pod"
    return ref


def statefulset_status(sts: dict, pods: list[dict], current: dict, update: dict, now) -> tuple[dict, Optional[float]]:
    """The status for ``pods`` and the two revisions, and the seconds until a ready pod becomes
    available (None if none waits)."""
    min_ready = int(sts["spec"].get("minReadySeconds") or 0)
    created = [p for p in pods if (p.get("status") or {}).get("phase")]
    ready = [p for p in created if running_and_ready(p)]
    waits = [available_in(p, min_ready, now) for p in ready]
    current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
    status = {"observedGeneration": sts["metadata"].get("generation", 1),
              "replicas": len(created), "readyReplicas": len(ready),
              "availableReplicas": sum(1 for w in waits if w == 0.0),
              "currentReplicas": sum(1 for p in created if history.pod_revision(p) == current_name),
              "updatedReplicas": sum(1 for p in created if history.pod_revision(p) == update_name),
              "currentRevision": current_name, "updateRevision": update_name}
    if strategy_of(sts) == "RollingUpdate" and status["updatedReplicas"] == status["replicas"] \
            == status["readyReplicas"]:
        status["currentRevision"], status["currentReplicas"] = update_name, status["updatedReplicas"]
    collisions = (sts.get("status") or {}).get("collisionCount")
    if collisions:
        status["collisionCount"] = collisions
    pending = [w for w in waits if w]
    return status, (min(pending) if pending else None)


def rolling_update_step(sts: dict, replicas: dict[int, dict], update_name: str) -> tuple[Optional[dict], bool]:
    """The next move of a RollingUpdate: (pod to delete or None, wait?). Walks ordinals from the
    highest down to the partition: the first pod of an old revision is deleted; an unhealthy
    pod (not running and ready, or terminating) makes the update wait."""
    for ordinal in sorted((o for o in replicas if o >= partition_of(sts)), reverse=True):
        pod = replicas[ordinal]
        if history.pod_revision(pod) != update_name and not is_terminating(pod):
            return pod, False
        if not running_and_ready(pod) or is_terminating(pod):
            return None, True
    return None, False


# -- the controller ---------------------------------------------------------------------

class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: ControllerContext, workers: int = 5):
        super().__init__(ctx, workers)
        self.sets = ctx.informers.informer(STATEFULSETS, {"namespace": index_by_namespace})
        self.pods = ctx.informers.informer(PODS, {CONTROLLER_INDEX: index_by_controller})
        self.revisions = ctx.informers.informer(history.CONTROLLER_REVISIONS, {CONTROLLER_INDEX: index_by_controller})
        self.sets.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handlers(self._pod_changed, lambda old, new: self._pod_updated(old, new),
                               self._pod_changed)
        self.revisions.add_handlers(self._revision_changed, lambda old, new: self._revision_changed(new),
                                    self._revision_changed)

    # -- handlers: enqueue only -------------------------------------------------

    def _owner_key(self, obj: dict) -> Optional[str]:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "StatefulSet":
            return None
        return f"{obj['metadata'].get('namespace')}/{ref['name']}"

    def _pod_changed(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)
            return
        parent, _ = parent_and_ordinal(pod)      # an orphan: its set (by name) may adopt it
        if parent and self.sets.store.get(f"{pod['metadata'].get('namespace')}/{parent}") is not None:
            self.queue.add(f"{pod['metadata'].get('namespace')}/{parent}")

    def _pod_updated(self, old: dict, new: dict) -> None:
        old_key = self._owner_key(old)
        if old_key is not None and old_key != self._owner_key(new):
            self.queue.add(old_key)
        self._pod_changed(new)

    def _revision_changed(self, revision: dict) -> None:
        key = self._owner_key(revision)
        if key is not None:
            self.queue.add(key)

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        sts = self.sets.store.get(key)
        if sts is None:
            return
        try:
            selector = label_selector_from_dict(sts["spec"].get("selector"))
        except SelectorError as err:
            raise PermanentError(f"invalid selector: {err}") from None
        pods = await claim(self.client, PODS, sts, claim_candidates(self.pods.store, sts),
                           lambda p: is_member(sts, p) and selector.matches(p["metadata"].get("labels")))
        revisions = await history.claim_revisions(self.client, sts, claim_candidates(self.revisions.store, sts))
        update, revisions = await history.sync_revisions(self.client, STATEFULSETS, sts, revisions)
        named = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == named), update)
        if not sts["metadata"].get("deletionTimestamp"):
            await self.manage(sts, pods, current, update)
        status = await self.write_status(sts, pods, current, update)
        in_use = {history.pod_revision(p) for p in pods} | {status["currentRevision"], status["updateRevision"]}
        await history.truncate_history(self.client, sts, revisions,
                                       {r["metadata"]["name"] for r in revisions if r["metadata"]["name"] in in_use})

    async def manage(self, sts: dict, pods: list[dict], current: dict, update: dict) -> None:
        """One pass of Kubernetes' updateStatefulSet over the cached pods (see the module
        docstring); returns early where OrderedReady must wait for the next pod event."""
        replicas, condemned = split_pods(sts, pods)
        if not await self.ensure_replicas(sts, replicas, current, update):
            return
        if not await self.remove_condemned(sts, condemned):
            return
        if strategy_of(sts) == "RollingUpdate":
            victim, _ = rolling_update_step(sts, replicas, update["metadata"]["name"])
            if victim is not None:
                await self.delete_pod(sts, victim, "rolling update")

    async def ensure_replicas(self, sts: dict, replicas: dict[int, dict], current: dict, update: dict) -> bool:
        """Make, in ordinal order, every missing pod and replace failed ones; False when
        OrderedReady must wait (a pod was just made, is terminating or not yet available)."""
        monotonic = is_monotonic(sts)
        missing = []
        for ordinal in ordinals(sts):
            pod = replicas.get(ordinal)
            if pod is not None and is_failed(pod) and not is_terminating(pod):
                await self.delete_pod(sts, pod, "failed")
                if monotonic:
                    return False
                continue
            if pod is None:
                if monotonic:
                    await self.create_pod(sts, ordinal, revision_for(sts, ordinal, current, update))
                    return False
                missing.append(ordinal)
            elif monotonic and not self._available(sts, pod):
                return False
        await asyncio.gather(*(self.create_pod(sts, o, revision_for(sts, o, current, update)) for o in missing))
        return True

    def _available(self, sts: dict, pod: dict) -> bool:
        """Running, ready and not terminating for minReadySeconds (comes back when it will be)."""
        if is_terminating(pod) or not running_and_ready(pod):
            return False
        wait = available_in(pod, int(sts["spec"].get("minReadySeconds") or 0), self.clock.wall())
        if wait:
            self.queue.add_after(object_key(sts), wait + 0.1)
        return wait == 0.0

    async def remove_condemned(self, sts: dict, condemned: list[dict]) -> bool:
        """Delete the pods beyond the range, highest ordinal first; OrderedReady deletes one at a
        time and waits for it to be gone. False while the scale-down is not finished."""
        monotonic = is_monotonic(sts)
        for pod in condemned:
            if is_terminating(pod):
                if monotonic:
                    return False
                continue
            await self.release_claims(sts, pod)
            await self.delete_pod(sts, pod, "scale down")
            if monotonic:
                return False
        return not condemned

    # -- writes ---------------------------------------------------------------------------

    async def create_pod(self, sts: dict, ordinal: int, revision: dict) -> None:
        """Make the claims of ``ordinal`` (existing ones are kept), then its pod."""
        for pvc in new_claims(sts, ordinal):
            await self.ensure_claim(sts, pvc)
        pod = new_pod(sts, ordinal, revision)
        try:
            await self.client.create(PODS, pod, sts["metadata"]["namespace"])
        except AlreadyExists:
            return                                      # the cache has not seen it yet
        self.ctx.recorder.emit(sts, "Normal", "SuccessfulCreate",
                               f"create Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful")

    async def ensure_claim(self, sts: dict, pvc: dict) -> None:
        """Create ``pvc``; an existing claim is kept, with its ownerReferences brought in line."""
        namespace = sts["metadata"]["namespace"]
        try:
            await self.client.create(PERSISTENTVOLUMECLAIMS, pvc, namespace)
            self.ctx.recorder.emit(sts, "Normal", "SuccessfulCreate",
                                   f"create Claim {pvc['metadata']['name']} Pod {sts['metadata']['name']} "
                                   f"in StatefulSet {sts['metadata']['name']} success")
            return
        except AlreadyExists:
            pass
        await self._set_claim_refs(sts, pvc["metadata"]["name"], None)

    async def release_claims(self, sts: dict, pod: dict) -> None:
        """Before a scale-down deletes ``pod``: its claims get it as owner when whenScaled is Delete."""
        if retention_policy(sts)[1] != "Delete":
            return
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            await self._set_claim_refs(sts, claim_name(template["metadata"]["name"], sts, ordinal_of(pod)), pod)

    async def _set_claim_refs(self, sts: dict, name: str, condemned: Optional[dict]) -> None:
        namespace = sts["metadata"]["namespace"]
        try:
            pvc = await self.client.get(PERSISTENTVOLUMECLAIMS, name, namespace)
        except NotFound:
            return
        refs = pvc["metadata"].get("ownerReferences") or []
        wanted = claim_owner_refs(sts, refs, condemned)
        if wanted != refs:
            patch = {"metadata": {"ownerReferences": wanted or None,
                                  "resourceVersion": pvc["metadata"]["resourceVersion"]}}
            await self.client.patch(PERSISTENTVOLUMECLAIMS, name, patch, namespace)

    async def delete_pod(self, sts: dict, pod: dict, why: str) -> None:
        try:
            await self.client.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
        except NotFound:
            return
        log.debug("statefulset %s: deleted %s (%s)", object_key(sts), pod["metadata"]["name"], why)
        self.ctx.recorder.emit(sts, "Normal", "SuccessfulDelete",
                               f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful")

    async def write_status(self, sts: dict, pods: list[dict], current: dict, update: dict) -> dict:
        """Write the status when it changed; the status."""
        status, wait = statefulset_status(sts, pods, current, update, self.clock.wall())
        if wait is not None:
            self.queue.add_after(object_key(sts), wait + 0.1)
        old = sts.get("status") or {}
        if any(old.get(k, 0) != v for k, v in status.items()):
            await self.client.patch(STATEFULSETS, sts["metadata"]["name"], {"status": status},
                                    sts["metadata"]["namespace"], subresource="status")
        return status


def new_controller(ctx: ControllerContext) -> StatefulSetController:
    return StatefulSetController(ctx)
