"""ServiceAccount controller: every active namespace has a ``default`` ServiceAccount.

A namespace being added or updated, or a ``default`` ServiceAccount being
deleted, enqueues the namespace; ``reconcile`` creates the account when the
namespace is active and the cache has none (AlreadyExists means another
writer won: fine).
"""

from __future__ import annotations

from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import NAMESPACES, SERVICEACCOUNTS
from pkube.controllers.base import Controller, ControllerContext

DEFAULT_ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        super().__init__(ctx, workers)
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.accounts = ctx.informers.informer(SERVICEACCOUNTS)
        self.namespaces.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.accounts.add_handlers(on_delete=self._account_deleted)

    def _account_deleted(self, account: dict) -> None:
        if account["metadata"]["name"] in DEFAULT_ACCOUNTS:
            self.queue.add(account["metadata"]["namespace"])

    async def reconcile(self, namespace: str) -> None:
        ns = self.namespaces.store.get(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        for name in DEFAULT_ACCOUNTS:
            if self.accounts.store.get(f"{namespace}/{name}") is None:
                await self._create(namespace, name)

    async def _create(self, namespace: str, name: str) -> None:
        account = {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": namespace}}
        try:
            await self.client.create(SERVICEACCOUNTS, account, namespace)
        except (AlreadyExists, NotFound):
            pass   # already there, or the namespace went away meanwhile


def new_controller(ctx: ControllerContext) -> ServiceAccountController:
    return ServiceAccountController(ctx)
