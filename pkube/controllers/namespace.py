"""Namespace controller: what the apiserver's own namespace cleanup leaves to a controller.

The apiserver (pkube/apiserver/namespaces.py) already deletes everything in a
Terminating namespace and removes the namespace once it is empty. Two things
can keep it waiting forever, and this controller handles them, as
Kubernetes' namespace controller and pod GC do:

- pods deleted gracefully on a node that does not exist (no kubelet will
  ever confirm them) are deleted with grace 0;
- the namespace's status gets the conditions ``kubectl describe`` shows:
  ``NamespaceContentRemaining`` (what is left, by resource, custom resources
  included) and
  ``NamespaceFinalizersRemaining`` (finalizers holding objects back).

A Terminating namespace is revisited every ``recheck`` seconds until it is gone.
Objects held by ownership finalizers (orphan, foregroundDeletion) are the
garbage collector's.
"""

from __future__ import annotations

from pkube.client.errors import ApiError, NotFound
from pkube.client.resources import (CONFIGMAPS, CONTROLLERREVISIONS, CUSTOMRESOURCEDEFINITIONS, DAEMONSETS, DEPLOYMENTS,
                              ENDPOINTS, NAMESPACES, NODES, PODS, REPLICASETS, SECRETS, SERVICEACCOUNTS, SERVICES,
                              STATEFULSETS)
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.garbagecollector import custom_resource

CONTENT = (PODS, REPLICASETS, DEPLOYMENTS, SERVICES, ENDPOINTS, CONFIGMAPS, SECRETS, SERVICEACCOUNTS,
           DAEMONSETS, STATEFULSETS, CONTROLLERREVISIONS)


def by_namespace(obj: dict) -> list[str]:
    return [obj["metadata"].get("namespace") or ""]


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, ctx: ControllerContext, workers: int = 2, recheck: float = 2.0):
        super().__init__(ctx, workers)
        self.recheck = recheck
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.nodes = ctx.informers.informer(NODES)
        self.content = {r.plural: ctx.informers.informer(r, {"namespace": by_namespace}) for r in CONTENT}
        self.crds = ctx.informers.informer(CUSTOMRESOURCEDEFINITIONS)
        self.namespaces.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))

    async def reconcile(self, name: str) -> None:
        ns = self.namespaces.store.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        await self.force_delete_stranded_pods(name)
        await self.report(ns)
        self.queue.add_after(name, self.recheck)

    async def force_delete_stranded_pods(self, namespace: str) -> None:
        """Pods being deleted on a node that does not exist are removed at once."""
        for pod in self.content["pods"].store.by_index("namespace", namespace):
            node = (pod.get("spec") or {}).get("nodeName")
            if pod["metadata"].get("deletionTimestamp") and node and self.nodes.store.get(node) is None:
                try:
                    await self.client.delete(PODS, pod["metadata"]["name"], namespace, grace_period_seconds=0)
                except NotFound:
                    pass

    def remaining(self, namespace: str) -> tuple[dict, dict]:
        """(resource -> objects left, finalizer -> objects it holds) in ``namespace``."""
        left, finalizers = {}, {}
        for plural, informer in self.content.items():
            objects = informer.store.by_index("namespace", namespace)
            if objects:
                left[plural] = len(objects)
            for obj in objects:
                for finalizer in obj["metadata"].get("finalizers") or []:
                    finalizers[finalizer] = finalizers.get(finalizer, 0) + 1
        return left, finalizers

    async def custom_remaining(self, namespace: str, left: dict, finalizers: dict) -> None:
        """Add the custom objects left in ``namespace`` (listed live: one list per namespaced
        CRD, only while a namespace terminates) to ``left`` and ``finalizers``."""
        for crd in self.crds.store.list():
            resource = custom_resource(crd)
            if resource is None or not resource.namespaced:
                continue
            try:
                objects = (await self.client.list(resource, namespace)).get("items") or []
            except NotFound:
                continue  # the CRD went meanwhile
            if objects:
                left[crd["metadata"]["name"]] = len(objects)
            for obj in objects:
                for finalizer in obj["metadata"].get("finalizers") or []:
                    finalizers[finalizer] = finalizers.get(finalizer, 0) + 1

    async def report(self, ns: dict) -> None:
        """Write the NamespaceContentRemaining / NamespaceFinalizersRemaining conditions."""
        left, finalizers = self.remaining(ns["metadata"]["name"])
        await self.custom_remaining(ns["metadata"]["name"], left, finalizers)
        conditions = [
            self._condition(ns, "NamespaceContentRemaining", left, "SomeResourcesRemain",
                            "ContentRemoved", "Some resources are remaining: ",
                            lambda k, n: f"{k} has {n} resource instances"),
            self._condition(ns, "NamespaceFinalizersRemaining", finalizers, "SomeFinalizersRemain",
                            "ContentHasNoFinalizers", "Some content in the namespace has finalizers remaining: ",
                            lambda k, n: f"{k} in {n} resource instances"),
        ]
        old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or []}
        if all(_same(old.get(c["type"]), c) for c in conditions):
            return
        try:
            await self.client.patch(NAMESPACES, ns["metadata"]["name"], {"status": {"conditions": conditions}},
                                    subresource="status")
        except NotFound:
            pass
        except ApiError as err:
            if err.code != 409:
                raise

    def _condition(self, ns, kind, counts, true_reason, false_reason, prefix, describe) -> dict:
        now = rfc3339(self.clock.wall())
        if counts:
            message = prefix + ", ".join(describe(k, n) for k, n in sorted(counts.items()))
            return {"type": kind, "status": "True", "reason": true_reason, "message": message,
                    "lastTransitionTime": now}
        return {"type": kind, "status": "False", "reason": false_reason,
                "message": "All content successfully removed" if kind.endswith("ContentRemaining")
                else "All content-preserving finalizers finished", "lastTransitionTime": now}


def _same(old, new) -> bool:
    return old is not None and all(old.get(k) == new[k] for k in ("status", "reason", "message"))


def new_controller(ctx: ControllerContext) -> NamespaceController:
    return NamespaceController(ctx)
