"""Deletion: grace periods, finalizers, propagation policy, preconditions.

- A pod bound to a node is deleted gracefully: it gets ``deletionTimestamp``
  and ``deletionGracePeriodSeconds`` and stays until its kubelet deletes it
  with grace 0. Unbound pods (and every other kind) go at once.
- Finalizers keep an object (with ``deletionTimestamp`` set) until an update
  empties them; ``ResourceStore.finish_if_released`` then removes it.
- propagationPolicy Orphan / Foreground adds the ``orphan`` /
  ``foregroundDeletion`` finalizer, as Kubernetes does (the garbage collector
  acts on them); Background adds nothing.
- A CustomResourceDefinition gets the ``customresourcecleanup`` finalizer:
  pkube/apiserver/customresources.py deletes its objects, then the CRD.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Optional

from pkube.api import meta
from pkube.api.crd import CLEANUP_FINALIZER
from pkube.api.kinds import is_crd
from pkube.api.jsonvalue import deep_copy
from pkube.apiserver import errors
from pkube.apiserver.conversion import to_served
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, translate
from pkube.apiserver.storage.interface import Conflict, Preconditions

PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")
POLICY_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}
DEFAULT_POD_GRACE = 30


@dataclass(frozen=True)
class DeleteOptions:
    """metav1.DeleteOptions, from the body or the query."""

    grace_period_seconds: Optional[int] = None
    propagation_policy: Optional[str] = None
    preconditions: Preconditions = Preconditions()
    dry_run: bool = False


def delete_options(query: dict, body: Optional[dict]) -> DeleteOptions:
    """Merge query parameters and a DeleteOptions body; 400 on bad values."""
    body = body or {}
    if not isinstance(body, dict):
        raise errors.bad_request("the body of a delete must be a DeleteOptions object")
    grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
    policy = body.get("propagationPolicy", query.get("propagationPolicy"))
    if body.get("orphanDependents") is True or query.get("orphanDependents") == "true":
        policy = policy or "Orphan"
    pre = body.get("preconditions") or {}
    dry_run = body.get("dryRun") or query.get("dryRun")
    try:
        grace = None if grace in (None, "") else int(grace)
    except (TypeError, ValueError):
        raise errors.bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}") from None
    if grace is not None and grace < 0:
        grace = 0
    if policy is not None and policy not in PROPAGATION_POLICIES:
        raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                 '"Foreground", "Background", "Orphan"')
    if not isinstance(pre, dict):
        raise errors.bad_request("preconditions must be an object")
    return DeleteOptions(grace, policy, Preconditions(uid=pre.get("uid"), resource_version=pre.get("resourceVersion")),
                         _is_dry_run(dry_run))


def _is_dry_run(value) -> bool:
    if value in (None, "", []):
        return False
    values = value if isinstance(value, list) else [value]
    if values != ["All"]:
        raise errors.bad_request(f'dryRun: Unsupported value: {values!r}: supported values: "All"')
    return True


def grace_for(target: Target, obj: dict, opts: DeleteOptions) -> int:
    """The grace period this delete asks for: 0 means "remove now"."""
    if target.info.builtin_kind != "Pod":
        return 0
    spec = obj.get("spec") or {}
    if not spec.get("nodeName"):
        return 0
    if opts.grace_period_seconds is not None:
        return opts.grace_period_seconds
    grace = spec.get("terminationGracePeriodSeconds", DEFAULT_POD_GRACE)
    return grace if isinstance(grace, int) and grace >= 0 else DEFAULT_POD_GRACE


def deletion_finalizer(target: Target, opts: DeleteOptions) -> Optional[str]:
    """The finalizer a delete adds: the CRD cleanup one on a CustomResourceDefinition
    (its objects go first), else the propagation policy's (None for Background)."""
    if is_crd(target.info):
        return CLEANUP_FINALIZER
    return POLICY_FINALIZERS.get(opts.propagation_policy or "")


def mark_deleting(obj: dict, grace: int, finalizer: Optional[str], now: datetime.datetime) -> dict:
    """Pure: ``obj`` with deletionTimestamp/deletionGracePeriodSeconds set (a shorter
    grace wins over an earlier one) and ``finalizer`` added."""
    new = deep_copy(obj)
    md = new["metadata"]
    previous = md.get("deletionGracePeriodSeconds")
    if md.get("deletionTimestamp") is None or (previous is not None and grace < previous):
        md["deletionTimestamp"] = meta.now_rfc3339(now + datetime.timedelta(seconds=grace))
        md["deletionGracePeriodSeconds"] = grace
    if finalizer and finalizer not in (md.get("finalizers") or []):
        md["finalizers"] = [*(md.get("finalizers") or []), finalizer]
    return new


class Deleter:
    """Delete and deletecollection for every kind, plus the removal hooks."""

    def __init__(self, store: ResourceStore, namespaces, clock=None):
        self.store, self.namespaces = store, namespaces
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        store.on_removed = self.remove

    async def delete(self, target: Target, opts: DeleteOptions) -> dict:
        """DELETE one object; returns the removed object, or the object as it now waits.

        Decided first on the newest state of the object the apiserver knows without a
        read (the watch cache's, or its own last write: ``Storage.known``), every write
        then conditioned on that state's resourceVersion, so that the outcome is the one
        a fresh read would have given; when that state proves stale (the condition fails,
        or the client's preconditions do not hold on it) the object is read and the delete
        decided again."""
        known = self._known(target, opts)
        if known is not None:
            pinned = Preconditions(uid=opts.preconditions.uid, resource_version=known["metadata"]["resourceVersion"])
            try:
                return await self._delete(target, opts, known, pinned)
            except errors.ApiError as err:
                if err.code != 409:
                    raise
        current = await self.store.get(target)
        with translate(target.info, target.name):
            opts.preconditions.check(target.key, current)
        return await self._delete(target, opts, current, opts.preconditions)

    def _known(self, target: Target, opts: DeleteOptions) -> Optional[dict]:
        """The state to decide on without a read (see ``delete``), or None: none is known,
        the client's preconditions fail on it, or the delete is a dry run or a Namespace's."""
        if opts.dry_run or target.info.builtin_kind == "Namespace":
            return None
        known = self.store.storage.known(target.key)
        if known is None or (known.get("metadata") or {}).get("resourceVersion") is None:
            return None
        try:
            opts.preconditions.check(target.key, known)
        except Conflict:
            return None
        return to_served(target.info, known)

    async def _delete(self, target: Target, opts: DeleteOptions, current: dict,
                      preconditions: Preconditions) -> dict:
        """The delete decided on ``current`` (which satisfies ``opts.preconditions``); every
        write is conditioned on ``preconditions``."""
        info = target.info
        if info.builtin_kind == "Namespace":
            return await self.namespaces.begin_termination(target, current, opts)
        grace = grace_for(target, current, opts)
        finalizer = deletion_finalizer(target, opts)
        keeps = (current["metadata"].get("finalizers") or []) or finalizer
        if grace == 0 and not keeps:
            if opts.dry_run:
                return current
            return await self.remove(target, current, preconditions)
        if opts.dry_run:
            return mark_deleting(current, grace, finalizer, self.clock())
        with translate(info, target.name):
            marked = await self.store.storage.guaranteed_update(
                target.key, lambda obj: mark_deleting(obj, grace, finalizer, self.clock()),
                preconditions)
        return await self.store.finish_if_released(target, marked)

    async def remove(self, target: Target, obj: dict, preconditions: Optional[Preconditions] = None) -> dict:
        """Take ``obj`` out of the store now and free what it held; NotFound → 404."""
        info = target.info
        name = meta.name_of(obj)
        key = info.key(meta.namespace_of(obj) or None, name)
        precondition = preconditions or Preconditions(uid=obj.get("metadata", {}).get("uid"))
        with translate(info, name):
            removed = await self.store.storage.delete(key, precondition)
        if info.builtin_kind == "Service":
            await self.store.services.on_delete(removed)
        return removed

    async def delete_collection(self, target: Target, items: list[dict], opts: DeleteOptions) -> list[dict]:
        """Delete each of ``items`` (already selected); objects gone meanwhile are skipped."""
        results = []
        for obj in items:
            one = Target(target.info, meta.namespace_of(obj) or None, meta.name_of(obj))
            try:
                results.append(await self.delete(one, opts))
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return results


# Resources whose storage has ReturnDeletedObject: a DELETE answers with the object even when
# it is gone (kubernetes pkg/registry/core/{pod,service,serviceaccount}/storage,
# storage/storageclass/storage; a Namespace's own Delete). Every other resource, custom ones
# included, answers an immediate removal with a Status (genericregistry.Store.finalizeDelete).
RETURNS_DELETED_OBJECT = frozenset((("", "pods"), ("", "services"), ("", "serviceaccounts"),
                                    ("", "namespaces"), ("storage.k8s.io", "storageclasses")))


def answers_status(info, deleted: dict) -> bool:
    """True when a DELETE whose result is ``deleted`` answers with a Status rather than the
    object: the object is gone (no finalizer keeps it) and its resource does not return it."""
    if info.custom is None and (info.group, info.plural) in RETURNS_DELETED_OBJECT:
        return False
    return not (deleted.get("metadata") or {}).get("finalizers")


def deleted_status(info, deleted: dict) -> dict:
    """The Status Success of an immediate removal (finalizeDelete): details name, group,
    kind (the resource, as Kubernetes fills it) and uid; no code."""
    md = deleted.get("metadata") or {}
    details = {k: v for k, v in (("name", md.get("name")), ("group", info.group), ("kind", info.plural),
                                 ("uid", md.get("uid"))) if v}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
