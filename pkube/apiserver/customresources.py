"""The CRD controller inside each apiserver: serve what the stored CustomResourceDefinitions define.

Every apiserver runs one, driven by the store's watch (never by the request that wrote
a CRD), so several apiservers converge on the same served set:

- after each change it recomputes the whole custom set, accepting names oldest CRD first
  (creationTimestamp, then name), so every apiserver reaches the same decision;
  it swaps that set into the ``Registry`` (discovery, routes, OpenAPI follow it);
- it writes each CRD's status when it differs from what it should be: acceptedNames,
  NamesAccepted, Established (set as soon as the names are accepted: serving starts
  on the same event) and Terminating. The write is a pure function of the stored CRD,
  so two apiservers writing it agree and the second write changes nothing;
- a CRD being deleted carries the customresourcecleanup finalizer (pkube/apiserver/deletion.py
  adds it): its objects are deleted (their own finalizers respected), then the finalizer
  is removed and the CRD goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Optional

from pkube.api import crd as crds
from pkube.api import meta
from pkube.api.causes import show
from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import Registry, ResourceInfo
from pkube.apiserver import errors
from pkube.apiserver.deletion import DeleteOptions
from pkube.apiserver.paths import Target
from pkube.apiserver.storage.interface import NotFound, Preconditions, Storage

log = logging.getLogger(__name__)

CLEANUP_RETRY_SECONDS = 0.5
WATCH_RETRY_SECONDS = 1.0
CONFLICT_FIELDS = {"PluralConflict": "plural", "SingularConflict": "singular",
                   "ShortNamesConflict": "shortNames", "KindConflict": "kind", "ListKindConflict": "listKind"}


def condition(kind: str, status: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def desired_conditions(crd: dict, conflict: Optional[tuple[str, str]]) -> list[dict]:
    """NamesAccepted, Established (and Terminating while deleted) for ``crd``, whose names
    conflict as ``conflict`` says (None: accepted)."""
    if conflict is None:
        found = [condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
                 condition("Established", "True", "InitialNamesAccepted", "the initial names have been accepted")]
    else:
        found = [condition("NamesAccepted", "False", *conflict),
                 condition("Established", "False", "NotAccepted", "not all names are accepted")]
    if crd.get("metadata", {}).get("deletionTimestamp"):
        found.append(condition("Terminating", "True", "InstanceDeletionInProgress",
                               "CustomResource deletion is in progress"))
    return found


def with_status(crd: dict, conflict: Optional[tuple[str, str]], now: str) -> dict:
    """Pure: ``crd`` with its conditions (and acceptedNames, when accepted) as they should be.
    A condition keeps its lastTransitionTime while its status does not change."""
    new = deep_copy(crd)
    status = new.setdefault("status", {})
    old = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    conditions = []
    for wanted in desired_conditions(crd, conflict):
        previous = old.get(wanted["type"])
        same = previous is not None and previous.get("status") == wanted["status"]
        conditions.append({**wanted, "lastTransitionTime": previous.get("lastTransitionTime") if same else now})
    status["conditions"] = conditions
    if conflict is None:
        status["acceptedNames"] = crds.accepted_names(crd)
    return new


def without_cleanup_finalizer(crd: dict) -> dict:
    new = deep_copy(crd)
    finalizers = [f for f in new["metadata"].get("finalizers") or [] if f != crds.CLEANUP_FINALIZER]
    if finalizers:
        new["metadata"]["finalizers"] = finalizers
    else:
        new["metadata"].pop("finalizers", None)
    return new


def _order(crd: dict) -> tuple[str, str]:
    md = crd.get("metadata", {})
    return md.get("creationTimestamp") or "", md.get("name") or ""


def is_cleaning_up(crd: dict) -> bool:
    md = crd.get("metadata", {})
    return bool(md.get("deletionTimestamp")) and crds.CLEANUP_FINALIZER in (md.get("finalizers") or [])


class CustomResourceDefinitions:
    """Follows the CRDs of one store and serves them through ``registry``.

    ``start()`` lists and serves what exists before returning (so a restarted apiserver
    serves its custom resources from its first request), then follows the watch;
    ``stop()`` ends every task. ``deleter`` (apiserver.deletion.Deleter) deletes the
    objects of a CRD being deleted.
    """

    def __init__(self, storage: Storage, registry: Registry, deleter):
        self.storage, self.registry, self.deleter = storage, registry, deleter
        self.info = registry.by_kind("CustomResourceDefinition", crds.GROUP)
        self.crds: dict[str, dict] = {}
        self.conflicts: dict[str, Optional[tuple[str, str]]] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._watcher: Optional[asyncio.Task] = None

    async def start(self) -> None:
        listed = await self.storage.list(self.info.key_prefix())
        self.crds = {meta.name_of(o): o for o in listed.items}
        self.refresh()
        self._watcher = asyncio.create_task(self._follow(listed.revision))

    async def stop(self) -> None:
        tasks = [t for t in [self._watcher, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- admission: names

    def check_names(self, crd: dict) -> list[dict]:
        """The 422 causes for a CRD whose names are already served (by a built-in
        resource or another CRD); empty when they are free."""
        conflict = crds.name_conflicts(crd, self.registry.resources)
        if conflict is None:
            return []
        reason, message = conflict
        field = f"spec.names.{CONFLICT_FIELDS[reason]}"
        value = crds.names_of(crd).get(CONFLICT_FIELDS[reason])
        return [{"reason": "FieldValueInvalid", "field": field,
                 "message": f"Invalid value: {show(value)}: {message}"}]

    # ---- following the store

    async def _follow(self, revision: int) -> None:
        """Keep ``crds`` current from a watch; relist after any failure."""
        while True:
            try:
                async with contextlib.aclosing(self.storage.watch(self.info.key_prefix(), revision)) as events:
                    async for event in events:
                        self._note(event.object, event.type == "DELETED")
                        revision = event.revision
                        self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("CRD watch failed (%s); relisting", exc)
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    listed = await self.storage.list(self.info.key_prefix())
                    self.crds = {meta.name_of(o): o for o in listed.items}
                    revision = listed.revision
                    self.refresh()

    def _note(self, crd: dict, deleted: bool) -> None:
        if deleted:
            self.crds.pop(meta.name_of(crd), None)
        else:
            self.crds[meta.name_of(crd)] = crd

    def refresh(self) -> None:
        """Serve the accepted CRDs of ``crds`` (the older one keeps a clashing name; the others'
        clashes go in ``conflicts``); start the status writes and cleanups they need."""
        served: list[ResourceInfo] = list(self.registry.builtin)
        custom: list[ResourceInfo] = []
        self.conflicts = {}
        for crd in sorted(self.crds.values(), key=_order):
            conflict = crds.name_conflicts(crd, served)
            self.conflicts[meta.name_of(crd)] = conflict
            if conflict is None:
                infos = crds.custom_resources(crd)
                custom += infos
                served += infos
        self.registry.set_custom(custom)
        for name, crd in self.crds.items():
            if with_status(crd, self.conflicts[name], "") != crd or is_cleaning_up(crd):
                self._schedule(name)

    def _schedule(self, name: str) -> None:
        if name not in self._tasks or self._tasks[name].done():
            self._tasks[name] = asyncio.create_task(self._reconcile(name))

    async def _reconcile(self, name: str) -> None:
        """Write the CRD's status; for a CRD being deleted, delete its objects, then it."""
        while name in self.crds:
            try:
                await self._write_status(name)
                if not is_cleaning_up(self.crds.get(name, {})) or await self._cleanup(name):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying, as Kubernetes' controllers do
                log.warning("reconciling CRD %s: %s", name, exc)
            await asyncio.sleep(CLEANUP_RETRY_SECONDS)

    async def _write_status(self, name: str) -> None:
        now = meta.now_rfc3339()
        conflict = self.conflicts.get(name)
        with contextlib.suppress(NotFound):
            await self.storage.guaranteed_update(self.info.key(None, name),
                                                 lambda current: with_status(current, conflict, now))

    async def _cleanup(self, name: str) -> bool:
        """One pass deleting the CRD's objects; True once none is left and the CRD is released."""
        crd = self.crds.get(name)
        info = crds.custom_resources(crd, served_only=False)[0] if crd else None
        if info is None:
            return True
        listed = await self.storage.list(info.key_prefix())
        for obj in listed.items:
            target = Target(info, meta.namespace_of(obj) or None, meta.name_of(obj))
            with contextlib.suppress(errors.ApiError):
                await self.deleter.delete(target, DeleteOptions())
        if listed.items:
            return False
        await self._release(name)
        return True

    async def _release(self, name: str) -> None:
        key = self.info.key(None, name)
        try:
            released = await self.storage.guaranteed_update(key, without_cleanup_finalizer)
            md = released["metadata"]
            if md.get("deletionTimestamp") and not md.get("finalizers"):
                await self.storage.delete(key, Preconditions(uid=md.get("uid")))
        except NotFound:
            pass
