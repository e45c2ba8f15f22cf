"""Garbage collector: ownerReferences, with background, foreground and orphan deletion.

Objects of the ``MONITORED`` resources are followed by the shared informers,
each indexed by uid and by the uids of its owners (so no separate graph is
kept); so are the custom resources of every established CRD, through an
informer of their own started when the CRD is seen (key ``"crd|<name>"``) and
stopped when it goes. Keys are ``"<resource>|<namespace>/<name>"``, the
resource being its plural, with ``.group`` for a custom one. For one object,
``reconcile``:

- being deleted with the ``orphan`` finalizer: removes its ownerReference
  from every dependent, then the finalizer;
- being deleted with ``foregroundDeletion``: deletes its dependents (those
  with dependents of their own in the foreground too), and removes the
  finalizer once no dependent with blockOwnerDeletion is left;
- otherwise, when it has ownerReferences: owners that are gone (checked
  with a live GET, the cache may lag) are dropped from the list; when none is
  left the object is deleted (background; foreground if an owner waits for
  its dependents).

Events on an object enqueue it, its owners (they may wait for it) and, on
deletion, its dependents.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from pkube.client.errors import Conflict, NotFound
from pkube.client.informer import Informer
from pkube.client.resources import (CONFIGMAPS, CONTROLLERREVISIONS, CRONJOBS, CUSTOMRESOURCEDEFINITIONS, DAEMONSETS,
                              DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES, JOBS, NAMESPACES, NODES, PERSISTENTVOLUMECLAIMS,
                              PERSISTENTVOLUMES, PODS, REPLICASETS, REPLICATIONCONTROLLERS, SECRETS, SERVICEACCOUNTS, SERVICES,
                              STATEFULSETS, Resource)
from pkube.client.store import object_key
from pkube.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

MONITORED = (PODS, REPLICASETS, DEPLOYMENTS, SERVICES, ENDPOINTS, ENDPOINTSLICES, CONFIGMAPS,
             SECRETS, SERVICEACCOUNTS, DAEMONSETS, STATEFULSETS, CONTROLLERREVISIONS, PERSISTENTVOLUMECLAIMS,
             JOBS, CRONJOBS, REPLICATIONCONTROLLERS)
KIND_RESOURCES = {("v1", "Pod"): PODS, ("apps/v1", "ReplicaSet"): REPLICASETS,
                  ("apps/v1", "Deployment"): DEPLOYMENTS, ("v1", "Service"): SERVICES,
                  ("v1", "Endpoints"): ENDPOINTS, ("discovery.k8s.io/v1", "EndpointSlice"): ENDPOINTSLICES,
                  ("v1", "ConfigMap"): CONFIGMAPS, ("v1", "Secret"): SECRETS,
                  ("v1", "ServiceAccount"): SERVICEACCOUNTS, ("v1", "Node"): NODES,
                  ("v1", "Namespace"): NAMESPACES, ("apps/v1", "DaemonSet"): DAEMONSETS,
                  ("apps/v1", "StatefulSet"): STATEFULSETS, ("apps/v1", "ControllerRevision"): CONTROLLERREVISIONS,
                  ("v1", "PersistentVolumeClaim"): PERSISTENTVOLUMECLAIMS, ("batch/v1", "Job"): JOBS,
                  ("batch/v1", "CronJob"): CRONJOBS, ("v1", "ReplicationController"): REPLICATIONCONTROLLERS,
                  ("v1", "PersistentVolume"): PERSISTENTVOLUMES}
ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"
CRD_KEY = "crd|"


def by_uid(obj: dict) -> list[str]:
    uid = obj["metadata"].get("uid")
    return [uid] if uid else []


def by_owner(obj: dict) -> list[str]:
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid")]


def resource_for(ref: dict) -> Optional[Resource]:
    """The built-in resource of an ownerReference's apiVersion/kind; None for other kinds."""
    return KIND_RESOURCES.get((ref.get("apiVersion"), ref.get("kind")))


def resource_key(resource) -> str:
    """A resource's name in the queue keys: its plural for a built-in one (``pods``),
    ``plural.group`` for a custom one (``widgets.example.com``, its CRD's name)."""
    return resource.plural if resource in KIND_RESOURCES.values() else f"{resource.plural}.{resource.group}"


def custom_resource(crd: dict) -> Optional[Resource]:
    """The storage version's resource of an established CRD (being deleted or not); else None."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
        return None
    spec = crd.get("spec") or {}
    version = next((v.get("name") for v in spec.get("versions") or [] if v.get("storage")), None)
    plural = (spec.get("names") or {}).get("plural")
    if not version or not plural or not spec.get("group"):
        return None
    return Resource(spec["group"], version, plural, namespaced=spec.get("scope") == "Namespaced")


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext, resources=MONITORED, workers: int = 5,
                 custom_resources: bool = True):
        super().__init__(ctx, workers)
        self.informers = {}
        for resource in resources:
            informer = ctx.informers.informer(resource, {"uid": by_uid, "owner": by_owner})
            self._follow(resource, informer)
        self.custom_kinds: dict[tuple[str, str], Resource] = {}  # (group, kind) -> storage resource
        self._custom_tasks: dict[str, asyncio.Task] = {}
        self.crds = ctx.informers.informer(CUSTOMRESOURCEDEFINITIONS) if custom_resources else None
        if self.crds is not None:
            enqueue_crd = self._enqueue_crd
            self.crds.add_handlers(enqueue_crd, lambda old, new: enqueue_crd(new), enqueue_crd)

    def _follow(self, resource, informer: Informer) -> None:
        informer.add_handlers(self._handler(resource, "add"), self._update_handler(resource),
                              self._handler(resource, "delete"))
        self.informers[resource_key(resource)] = informer

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for task in self._custom_tasks.values():
                task.cancel()

    # -- handlers: enqueue only -------------------------------------------------

    def _handler(self, resource, event: str):
        def handle(obj: dict) -> None:
            if event == "add":
                self._enqueue_obj(resource, obj)
            else:
                self._enqueue_dependents(obj)
            self._enqueue_owners(obj)
        return handle

    def _update_handler(self, resource):
        def handle(old: dict, new: dict) -> None:
            self._enqueue_obj(resource, new)
            self._enqueue_owners(new)
            self._enqueue_owners(old)
        return handle

    def _enqueue_crd(self, crd: dict) -> None:
        self.queue.add(CRD_KEY + crd["metadata"]["name"])

    def _enqueue_obj(self, resource, obj: dict) -> None:
        meta = obj["metadata"]
        if meta.get("ownerReferences") or (meta.get("deletionTimestamp") and
                                           {ORPHAN, FOREGROUND} & set(meta.get("finalizers") or [])):
            self.queue.add(f"{resource_key(resource)}|{object_key(obj)}")

    def _enqueue_owners(self, obj: dict) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = self.find_by_uid(ref.get("uid"))
            if owner is not None and owner[1]["metadata"].get("deletionTimestamp"):
                self.queue.add(f"{owner[0]}|{object_key(owner[1])}")

    def _enqueue_dependents(self, obj: dict) -> None:
        for plural, dependent in self.dependents(obj["metadata"].get("uid")):
            self.queue.add(f"{plural}|{object_key(dependent)}")

    # -- lookups in the caches ----------------------------------------------------

    def find_by_uid(self, uid: Optional[str]) -> Optional[tuple[str, dict]]:
        for plural, informer in self.informers.items():
            for obj in informer.store.by_index("uid", uid or ""):
                return plural, obj
        return None

    def dependents(self, uid: Optional[str]) -> list[tuple[str, dict]]:
        return [(plural, obj) for plural, informer in self.informers.items()
                for obj in informer.store.by_index("owner", uid or "")]

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(CRD_KEY):
            self.sync_custom_resource(key[len(CRD_KEY):])
            return
        plural, obj_key = key.split("|", 1)
        informer = self.informers.get(plural)
        obj = informer.store.get(obj_key) if informer else None
        if obj is None:
            return
        resource = informer.resource
        finalizers = obj["metadata"].get("finalizers") or []
        if obj["metadata"].get("deletionTimestamp") and ORPHAN in finalizers:
            await self.orphan_dependents(resource, obj)
        elif obj["metadata"].get("deletionTimestamp") and FOREGROUND in finalizers:
            await self.delete_dependents(resource, obj)
        elif obj["metadata"].get("ownerReferences"):
            await self.collect_if_orphaned(resource, obj)

    def sync_custom_resource(self, crd_name: str) -> None:
        """Follow the objects of CRD ``crd_name`` while it is established (its objects'
        deletions, when the CRD goes, reach their dependents); stop once it is gone."""
        crd = self.crds.store.get(crd_name) if self.crds is not None else None
        resource = custom_resource(crd) if crd is not None else None
        key = crd_name  # = "<plural>.<group>", the custom resource's resource_key
        if resource is None:
            task = self._custom_tasks.pop(key, None)
            if task is not None:
                task.cancel()
                self.informers.pop(key, None)
            return  # custom_kinds keeps the kind: an owner of a kind no longer served is absent
        self.custom_kinds[(resource.group, (crd["spec"].get("names") or {}).get("kind", ""))] = resource
        if key in self._custom_tasks:
            return
        informer = Informer(self.client, resource, clock=self.clock, indexers={"uid": by_uid, "owner": by_owner})
        self._follow(resource, informer)
        self._custom_tasks[key] = asyncio.ensure_future(informer.run())

    def owner_resource(self, ref: dict) -> Optional[Resource]:
        """The resource of an ownerReference: a built-in one, or a custom one of a known CRD
        (at the reference's version: every served version sees the same object)."""
        builtin = resource_for(ref)
        if builtin is not None:
            return builtin
        group, _, version = (ref.get("apiVersion") or "").rpartition("/")
        custom = self.custom_kinds.get((group, ref.get("kind") or ""))
        if custom is None or not version:
            return None
        return Resource(custom.group, version, custom.plural, custom.namespaced)

    async def orphan_dependents(self, resource, owner: dict) -> None:
        """Strip the owner's reference from every dependent, then drop the finalizer.

        The dependents are read live: a dependent created just before the
        owner's deletion may not be in the caches yet, and once the owner is
        gone it would be collected instead of orphaned."""
        uid = owner["metadata"]["uid"]
        for dep_resource, dependent in await self.live_dependents(owner):
            refs = [r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            await self._set_refs(dep_resource, dependent, refs)
        await self.remove_finalizer(resource, owner, ORPHAN)

    async def live_dependents(self, owner: dict) -> list[tuple[Resource, dict]]:
        """The objects of the monitored resources that reference ``owner``, by a quorum list
        (in the owner's namespace when it has one)."""
        uid, namespace = owner["metadata"]["uid"], owner["metadata"].get("namespace")
        found = []
        for informer in self.informers.values():
            dep_resource = informer.resource
            if namespace and not dep_resource.namespaced:
                continue
            items = (await self.client.list_all(dep_resource, namespace if dep_resource.namespaced else None))
            found += [(dep_resource, obj) for obj in items.get("items") or [] if uid in by_owner(obj)]
        return found

    async def delete_dependents(self, resource, owner: dict) -> None:
        """Foreground: delete the dependents; drop the finalizer once no blocking one is left."""
        uid = owner["metadata"]["uid"]
        blocking = 0
        for plural, dependent in self.dependents(uid):
            ref = next(r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") == uid)
            blocking += bool(ref.get("blockOwnerDeletion"))
            if not dependent["metadata"].get("deletionTimestamp"):
                policy = "Foreground" if self.dependents(dependent["metadata"]["uid"]) else "Background"
                await self._delete(self.informers[plural].resource, dependent, policy)
        if blocking == 0:
            await self.remove_finalizer(resource, owner, FOREGROUND)

    async def collect_if_orphaned(self, resource, obj: dict) -> None:
        """Drop references to owners that are gone; delete ``obj`` if none is left."""
        refs = obj["metadata"]["ownerReferences"]
        alive, waiting = [], False
        for ref in refs:
            state = await self.owner_state(obj, ref)
            if state != "absent":
                alive.append(ref)
            waiting = waiting or state == "foreground"
        if len(alive) == len(refs):
            return
        if alive:
            await self._set_refs(resource, obj, alive)
        else:
            await self._delete(resource, obj, "Foreground" if waiting else "Background")

    async def owner_state(self, dependent: dict, ref: dict) -> str:
        """"absent" (gone, or another object under that name), "foreground" (being
        deleted in the foreground), "present", or "unknown" (a kind we cannot check)."""
        cached = self.find_by_uid(ref.get("uid"))
        if cached is not None:
            return _state(cached[1])
        resource = self.owner_resource(ref)
        if resource is None:
            return "unknown"
        namespace = dependent["metadata"].get("namespace") if resource.namespaced else None
        try:
            owner = await self.client.get(resource, ref["name"], namespace)
        except NotFound:
            return "absent"
        return _state(owner) if owner["metadata"].get("uid") == ref.get("uid") else "absent"

    # -- writes ---------------------------------------------------------------------

    async def _delete(self, resource, obj: dict, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self.client.delete(resource, meta["name"], meta.get("namespace"), propagation_policy=policy,
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            pass

    async def _set_refs(self, resource, obj: dict, refs: list) -> None:
        meta = obj["metadata"]
        patch = {"metadata": {"ownerReferences": refs or None, "uid": meta["uid"],
                              "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.client.patch(resource, meta["name"], patch, meta.get("namespace"))
        except NotFound:
            pass

    async def remove_finalizer(self, resource, obj: dict, finalizer: str) -> None:
        meta = obj["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
        patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.client.patch(resource, meta["name"], patch, meta.get("namespace"))
        except NotFound:
            pass


def _state(owner: dict) -> str:
    meta = owner["metadata"]
    if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or []):
        return "foreground"
    return "present"


def new_controller(ctx: ControllerContext) -> GarbageCollector:
    return GarbageCollector(ctx)
