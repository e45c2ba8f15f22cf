"""Mirror pods: each static pod shown in the API as `<name>-<node>`, annotated
`kubernetes.io/config.mirror` with the static pod's hash and owned by the Node.

The API copy is only a mirror: deleting it does not stop the static pod, and the next
reconcile makes it again; a mirror whose hash no longer matches a static pod is replaced
or deleted.
"""

from __future__ import annotations

import asyncio
import logging

from pkube.client.errors import AlreadyExists, ApiError, Conflict, NotFound
from pkube.client.resources import NODES, PODS
from pkube.kubelet.static import CONFIG_HASH, CONFIG_MIRROR

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0


def mirror_of(static_pod: dict, node: dict) -> dict:
    """The API object that mirrors `static_pod` on `node`."""
    meta = static_pod["metadata"]
    annotations = {**meta.get("annotations", {}), CONFIG_MIRROR: meta["annotations"][CONFIG_HASH]}
    owner = {"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
             "uid": node["metadata"]["uid"], "controller": True}
    mirror_meta = {k: v for k, v in meta.items() if k not in ("uid", "resourceVersion", "annotations")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**mirror_meta, "annotations": annotations, "ownerReferences": [owner]},
            "spec": static_pod["spec"]}


def is_mirror(pod: dict) -> bool:
    return CONFIG_MIRROR in ((pod.get("metadata") or {}).get("annotations") or {})


def pod_key(pod: dict) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace') or 'default'}/{meta['name']}"


class MirrorPods:
    """Reconciles the API's mirror pods with the static pods; call `changed()` on any
    change of either, `run()` does the work."""

    def __init__(self, client, node_name: str, on_created=None):
        self.client = client
        self.on_created = on_created or (lambda uid: None)   # a mirror was made: write its status again
        self.node_name = node_name
        self.static: dict[str, dict] = {}       # uid -> static pod
        self.mirrors: dict[str, dict] = {}      # key -> mirror pod seen in the API
        self._dirty = asyncio.Event()

    def set_static(self, pods: dict[str, dict]) -> None:
        self.static = dict(pods)
        self._dirty.set()

    def seen(self, pod: dict) -> None:
        """A mirror pod as the API shows it now (added or updated)."""
        self.mirrors[pod_key(pod)] = pod
        self._dirty.set()

    def gone(self, pod: dict) -> None:
        self.mirrors.pop(pod_key(pod), None)
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.reconcile()
            except ApiError as err:
                log.info("mirror pods: %s; retrying", err)
                await asyncio.sleep(RETRY_SECONDS)
                self._dirty.set()

    async def reconcile(self) -> None:
        wanted = {pod_key(p): p for p in self.static.values()}
        node = None
        for key, pod in wanted.items():
            mirror = self.mirrors.get(key)
            current_hash = pod["metadata"]["annotations"][CONFIG_HASH]
            if mirror is not None and mirror["metadata"].get("annotations", {}).get(CONFIG_MIRROR) == current_hash \
                    and not mirror["metadata"].get("deletionTimestamp"):
                continue
            if mirror is not None:      # outdated, or being deleted through the API: replace it
                await self._delete(mirror)
            node = node or await self.client.get(NODES, self.node_name)
            try:
                created = await self.client.create(PODS, mirror_of(pod, node), pod["metadata"]["namespace"])
                self.mirrors[key] = created
                self.on_created(pod["metadata"]["uid"])
            except AlreadyExists:
                self._dirty.set()         # the old one is still being deleted
                await asyncio.sleep(0.2)
        for key, mirror in list(self.mirrors.items()):
            if key not in wanted:
                await self._delete(mirror)

    async def _delete(self, mirror: dict) -> None:
        meta = mirror["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                     preconditions={"uid": meta.get("uid")})
        except (NotFound, Conflict):
            pass
        self.mirrors.pop(pod_key(mirror), None)
