"""The root CA publisher: the ConfigMap ``kube-root-ca.crt`` (key ``ca.crt``: the cluster CA,
from --root-ca-file) in every active namespace, as Kubernetes' root-ca-cert-publisher keeps it
for the ServiceAccount token volumes. A namespace added, or its ConfigMap changed or deleted,
enqueues the namespace; ``reconcile`` creates or rewrites the ConfigMap. Without
--root-ca-file the controller does nothing.
"""

from __future__ import annotations

import logging
from typing import Optional

from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import CONFIGMAPS, NAMESPACES
from pkube.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

CONFIG_MAP = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx: ControllerContext, ca_pem: Optional[str], workers: int = 2):
        super().__init__(ctx, workers)
        self.ca_pem = ca_pem
        if ca_pem is None:
            return
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.config_maps = ctx.informers.informer(CONFIGMAPS)
        self.namespaces.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.config_maps.add_handlers(on_update=lambda old, new: self._config_map_changed(new),
                                      on_delete=self._config_map_changed)

    def _config_map_changed(self, config_map: dict) -> None:
        if config_map["metadata"]["name"] == CONFIG_MAP:
            self.queue.add(config_map["metadata"]["namespace"])

    def desired(self, namespace: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": CONFIG_MAP, "namespace": namespace,
                             "annotations": {"kubernetes.io/description": DESCRIPTION}},
                "data": {KEY: self.ca_pem}}

    async def reconcile(self, namespace: str) -> None:
        ns = self.namespaces.store.get(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        current = self.config_maps.store.get(f"{namespace}/{CONFIG_MAP}")
        try:
            if current is None:
                await self.client.create(CONFIGMAPS, self.desired(namespace), namespace)
            elif (current.get("data") or {}).get(KEY) != self.ca_pem:
                await self.client.patch(CONFIGMAPS, CONFIG_MAP, {"data": {KEY: self.ca_pem}}, namespace,
                                        patch_type="merge")
        except (AlreadyExists, NotFound):
            pass   # created meanwhile (the update event comes), or the namespace went away


def read_ca(path: Optional[str]) -> Optional[str]:
    """The PEM of --root-ca-file; None (logged) without the flag or when it cannot be read."""
    if not path:
        log.info("root-ca-cert-publisher: no --root-ca-file, not publishing kube-root-ca.crt")
        return None
    try:
        with open(path) as f:
            return f.read()
    except OSError as err:
        log.error("root-ca-cert-publisher: --root-ca-file %s: %s; not publishing kube-root-ca.crt", path,
                  err.strerror)
        return None


def new_controller(ctx: ControllerContext) -> RootCACertPublisher:
    return RootCACertPublisher(ctx, read_ca(ctx.options.get("root_ca_file")))
