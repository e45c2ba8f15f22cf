"""Deployment controller: ReplicaSets per template, rolling or recreate rollouts, status.

Per Deployment key, ``reconcile``:
1. claims ReplicaSets (adopt matching orphans, release non-matching);
2. waits (returns) while an owned ReplicaSet has not yet acted on the last
   scale this controller wrote (status.observedGeneration behind, or the
   cache older than the write): rollout decisions are made on settled counts
   only, which is what keeps the maxSurge/maxUnavailable bounds;
3. being deleted: status only. Paused: scale only (no new ReplicaSet).
   A change of spec.replicas (an RS's desired-replicas annotation differs)
   is first spread proportionally over the active ReplicaSets, as Kubernetes does.
   Otherwise the new ReplicaSet (``<name>-<pod-template-hash>``) is found or
   created with the next revision, and the strategy runs: RollingUpdate
   (scale new up within replicas + maxSurge, old down while at least
   replicas − maxUnavailable stay available) or Recreate (old to zero, wait
   for their pods to go, then new up);
4. complete rollouts prune old ReplicaSets beyond revisionHistoryLimit;
5. status and the Available / Progressing conditions are written, and the
   key comes back when the progress deadline would pass.
Rollback (``kubectl rollout undo``) needs nothing special: the template
becomes equal to an old ReplicaSet's, which then gets the next revision.
"""

from __future__ import annotations

import logging
from typing import Optional

from pkube.api.selectors import SelectorError, label_selector_from_dict, spec_selector_selects
from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import DEPLOYMENTS, PODS, REPLICASETS
from pkube.client.store import index_by_namespace, object_key
from pkube.controllers import deployment_util as du
from pkube.controllers.base import Controller, ControllerContext, PermanentError, TemporaryError, split_key
from pkube.controllers.podcontrol import claim, controller_ref

log = logging.getLogger(__name__)


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, ctx: ControllerContext, workers: int = 5):
        super().__init__(ctx, workers)
        self.deploys = ctx.informers.informer(DEPLOYMENTS, {"namespace": index_by_namespace})
        self.rss = ctx.informers.informer(REPLICASETS, {"namespace": index_by_namespace})
        self.pods = ctx.informers.informer(PODS, {"namespace": index_by_namespace})
        self.deploys.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.rss.add_handlers(self._rs_changed, self._rs_updated, self._rs_deleted)
        self.pods.add_handlers(None, None, self._pod_deleted)
        self._written: dict[str, int] = {}   # RS uid -> resourceVersion of our last write

    # -- handlers: enqueue only -------------------------------------------------

    def _owner_key(self, rs: dict) -> Optional[str]:
        ref = controller_ref(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        return f"{rs['metadata'].get('namespace')}/{ref['name']}"

    def _rs_changed(self, rs: dict) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.queue.add(key)
            return
        labels = rs["metadata"].get("labels") or {}
        for deploy in self.deploys.store.by_index("namespace", rs["metadata"].get("namespace") or ""):
            if spec_selector_selects(deploy, labels):
                self.enqueue(deploy)

    def _rs_deleted(self, rs: dict) -> None:
        self._written.pop(rs["metadata"].get("uid"), None)
        self._rs_changed(rs)

    def _rs_updated(self, old: dict, new: dict) -> None:
        old_key = self._owner_key(old)
        if old_key is not None and old_key != self._owner_key(new):
            self.queue.add(old_key)
        self._rs_changed(new)

    def _pod_deleted(self, pod: dict) -> None:
        """Recreate waits for old pods to be gone."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.store.get(f"{pod['metadata'].get('namespace')}/{ref['name']}")
        if rs is not None and self._owner_key(rs):
            self.queue.add(self._owner_key(rs))

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        deploy = self.deploys.store.get(key)
        if deploy is None:
            return
        try:
            selector = label_selector_from_dict(deploy["spec"].get("selector"))
            du.rolling_params(deploy)
        except (SelectorError, ValueError) as err:
            raise PermanentError(f"invalid deployment: {err}") from None
        if selector.empty:
            raise PermanentError("empty selector: a deployment must select its pods")
        namespace, _ = split_key(key)
        candidates = self.rss.store.by_index("namespace", namespace)
        rss = await claim(self.client, REPLICASETS, deploy, candidates,
                          lambda rs: selector.matches(rs["metadata"].get("labels")))
        if not self._settled(rss):
            return
        if deploy["metadata"].get("deletionTimestamp"):
            await self.write_status(deploy, rss, du.find_new_rs(deploy, rss), moved=False)
            return
        await self.sync(deploy, rss)

    def _settled(self, rss: list[dict]) -> bool:
        """Every RS has acted on its latest spec, and the cache shows our last writes."""
        for rs in rss:
            meta, status = rs["metadata"], rs.get("status") or {}
            if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
                return False
            if int(meta.get("resourceVersion") or 0) < self._written.get(meta["uid"], 0):
                return False
        return True

    async def sync(self, deploy: dict, rss: list[dict]) -> None:
        new_rs = du.find_new_rs(deploy, rss)
        if deploy["spec"].get("paused") or du.is_scaling_event(deploy, rss):
            moved = await self.scale_only(deploy, rss, new_rs)
            await self.write_status(deploy, rss, new_rs, moved)
            return
        strategy = (deploy["spec"].get("strategy") or {}).get("type") or "RollingUpdate"
        if strategy == "Recreate" and await self.old_pods_going(deploy, rss, new_rs):
            await self.write_status(deploy, rss, new_rs, moved=True)
            return
        new_rs, created = await self.ensure_new_rs(deploy, rss, new_rs)
        if created:
            rss = rss + [new_rs]
        olds = [rs for rs in rss if rs is not new_rs]
        if strategy == "Recreate":
            moved = await self.recreate(deploy, new_rs)
        else:
            moved = await self.roll(deploy, rss, olds, new_rs)
        status = await self.write_status(deploy, rss, new_rs, moved or created)
        if du.complete(deploy, status):
            await self.prune_history(deploy, olds)

    # -- the new ReplicaSet -----------------------------------------------------

    async def ensure_new_rs(self, deploy: dict, rss: list[dict], new_rs: Optional[dict]) -> tuple[dict, bool]:
        """The new RS, with the current revision and annotations; (rs, created?)."""
        old_max = du.max_revision([rs for rs in rss if rs is not new_rs])
        if new_rs is not None:
            stale = du.revision_of(new_rs) <= old_max      # e.g. a rollback revived it
            wanted = du.rs_annotations(deploy, old_max + 1 if stale else None)
            wanted["minReadySeconds"] = int(deploy["spec"].get("minReadySeconds") or 0)
            return await self._refresh_new_rs(deploy, new_rs, wanted), False
        replicas = du.new_rs_replicas(deploy, rss, None)
        collisions = int((deploy.get("status") or {}).get("collisionCount") or 0)
        template_hash = du.pod_template_hash(deploy["spec"].get("template") or {}, collisions)
        rs = du.new_rs_object(deploy, template_hash, replicas, old_max + 1)
        try:
            created = await self.client.create(REPLICASETS, rs, deploy["metadata"]["namespace"])
        except AlreadyExists:
            await self._on_collision(deploy, rs)
        self.ctx.recorder.emit(deploy, "Normal", "ScalingReplicaSet",
                               f"Scaled up replica set {created['metadata']['name']} to {replicas}")
        self._remember(created)
        return created, True

    async def _refresh_new_rs(self, deploy: dict, rs: dict, wanted: dict) -> dict:
        """Bring the new RS's revision, desired/max annotations and minReadySeconds up to date."""
        min_ready = wanted.pop("minReadySeconds")
        annotations = rs["metadata"].get("annotations") or {}
        stale = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if du.REVISION in stale and annotations.get(du.REVISION):
            history = [h for h in (annotations.get(du.REVISION_HISTORY) or "").split(",") if h]
            stale[du.REVISION_HISTORY] = ",".join(history + [annotations[du.REVISION]])
        if not stale and int(rs["spec"].get("minReadySeconds") or 0) == min_ready:
            return rs
        patch = {"metadata": {"annotations": stale, "resourceVersion": rs["metadata"]["resourceVersion"]},
                 "spec": {"minReadySeconds": min_ready}}
        updated = await self.client.patch(REPLICASETS, rs["metadata"]["name"], patch,
                                          rs["metadata"]["namespace"])
        self._remember(updated)
        return updated

    async def _on_collision(self, deploy: dict, rs: dict) -> None:
        """An RS of that name exists but is not ours or has another template: bump collisionCount."""
        existing = await self.client.get(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"])
        ref = controller_ref(existing)
        if ref and ref.get("uid") == deploy["metadata"]["uid"] and du.templates_equal(
                existing["spec"].get("template") or {}, deploy["spec"].get("template") or {}):
            raise TemporaryError("new ReplicaSet exists but the cache has not seen it yet", 0.2)
        count = int((deploy.get("status") or {}).get("collisionCount") or 0) + 1
        await self.client.patch(DEPLOYMENTS, deploy["metadata"]["name"], {"status": {"collisionCount": count}},
                                deploy["metadata"]["namespace"], subresource="status")
        raise TemporaryError(f"hash collision on {rs['metadata']['name']}; collisionCount {count}", 0.1)

    # -- strategies ---------------------------------------------------------------

    async def roll(self, deploy: dict, rss: list[dict], olds: list[dict], new_rs: dict) -> bool:
        """One step of a rolling update: the new RS up within maxSurge, then old ones down
        within maxUnavailable (counting the new RS as just written); True if anything moved."""
        target = du.new_rs_replicas(deploy, rss, new_rs)
        if du.replicas_of(new_rs) > du.replicas_of(deploy):
            target = du.replicas_of(deploy)
        moved = False
        if target != du.replicas_of(new_rs):
            scaled = await self.scale(deploy, new_rs, target)
            rss = [scaled if rs is new_rs else rs for rs in rss]
            new_rs, moved = scaled, True
        return await self.scale_down_olds(deploy, rss, olds, new_rs) or moved

    async def scale_down_olds(self, deploy: dict, rss: list[dict], olds: list[dict], new_rs: dict) -> bool:
        """Unhealthy old replicas first, then available ones down to replicas − maxUnavailable."""
        budget = du.old_scale_down_budget(deploy, rss, new_rs)
        if budget <= 0 or not any(du.replicas_of(rs) for rs in olds):
            return False
        moved = False
        for rs in du.by_age(olds):
            unhealthy = du.replicas_of(rs) - du.status_of(rs, "availableReplicas")
            step = min(max(0, unhealthy), budget)
            if step:
                await self.scale(deploy, rs, du.replicas_of(rs) - step)
                budget -= step
                moved = True
        if moved:
            return True
        surplus = du.available_surplus(deploy, rss)
        for rs in du.by_age(olds):
            step = min(du.replicas_of(rs), surplus)
            if step > 0:
                await self.scale(deploy, rs, du.replicas_of(rs) - step)
                surplus -= step
                moved = True
        return moved

    async def old_pods_going(self, deploy: dict, rss: list[dict], new_rs: Optional[dict]) -> bool:
        """Recreate, first half: old ReplicaSets to zero; True while any of their pods is left."""
        olds = [rs for rs in rss if rs is not new_rs]
        moved = False
        for rs in olds:
            if du.replicas_of(rs):
                await self.scale(deploy, rs, 0)
                moved = True
        return moved or self._old_pods_left(olds)

    async def recreate(self, deploy: dict, new_rs: dict) -> bool:
        """Recreate, second half (no old pod left): the new ReplicaSet to spec.replicas."""
        if du.replicas_of(new_rs) != du.replicas_of(deploy):
            await self.scale(deploy, new_rs, du.replicas_of(deploy))
            return True
        return False

    def _old_pods_left(self, olds: list[dict]) -> bool:
        uids = {rs["metadata"]["uid"] for rs in olds}
        if any(du.status_of(rs, "replicas") for rs in olds):
            return True
        namespace = olds[0]["metadata"]["namespace"] if olds else ""
        return any((controller_ref(p) or {}).get("uid") in uids
                   for p in self.pods.store.by_index("namespace", namespace))

    async def scale_only(self, deploy: dict, rss: list[dict], new_rs: Optional[dict]) -> bool:
        """spec.replicas changed (or the deployment is paused): spread the new count over the
        active RSs in proportion to their sizes, without rolling; every active RS records the
        new desired-replicas, which ends the scaling event."""
        active = [rs for rs in rss if du.replicas_of(rs)] or ([new_rs] if new_rs else [])
        desired = str(du.replicas_of(deploy))
        moved = False
        for rs, target in proportional(active, du.replicas_of(deploy), new_rs):
            annotated = (rs["metadata"].get("annotations") or {}).get(du.DESIRED_REPLICAS)
            if target != du.replicas_of(rs) or annotated != desired:
                await self.scale(deploy, rs, target)
                moved = True
        return moved

    async def scale(self, deploy: dict, rs: dict, replicas: int) -> dict:
        """Write ``rs.spec.replicas`` (guarded by its resourceVersion) and its annotations."""
        meta = rs["metadata"]
        patch = {"metadata": {"annotations": du.rs_annotations(deploy), "resourceVersion": meta["resourceVersion"]},
                 "spec": {"replicas": replicas}}
        updated = await self.client.patch(REPLICASETS, meta["name"], patch, meta["namespace"])
        self._remember(updated)
        verb = "up" if replicas > du.replicas_of(rs) else "down"
        if replicas != du.replicas_of(rs):
            self.ctx.recorder.emit(deploy, "Normal", "ScalingReplicaSet",
                               f"Scaled {verb} replica set {meta['name']} from {du.replicas_of(rs)} to {replicas}")
        return updated

    def _remember(self, rs: dict) -> None:
        self._written[rs["metadata"]["uid"]] = int(rs["metadata"].get("resourceVersion") or 0)

    # -- history and status -------------------------------------------------------

    async def prune_history(self, deploy: dict, olds: list[dict]) -> None:
        """Delete the oldest scaled-down ReplicaSets beyond revisionHistoryLimit (default 10)."""
        limit = deploy["spec"].get("revisionHistoryLimit", 10)
        if limit is None:
            return
        idle = [rs for rs in olds if not du.replicas_of(rs) and not du.status_of(rs, "replicas")
                and not rs["metadata"].get("deletionTimestamp")]
        idle.sort(key=du.revision_of)
        for rs in idle[:max(0, len(idle) - int(limit))]:
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"])
            except NotFound:
                pass

    async def write_status(self, deploy: dict, rss: list[dict], new_rs: Optional[dict], moved: bool) -> dict:
        """Write status and conditions when they changed; the new status."""
        old = deploy.get("status") or {}
        status = du.deployment_status(deploy, rss, new_rs)
        now = self.clock.wall()
        moved = moved or du.progressed(old, status)
        conditions = [du.available_condition(deploy, status, now, old)]
        progressing = du.progressing_condition(deploy, status, old, new_rs, now, moved)
        if progressing is not None:
            conditions.append(progressing)
            self._come_back_at_deadline(deploy, progressing, now)
        status["conditions"] = conditions
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        if any(old.get(k) != v for k, v in status.items()):
            await self.client.patch(DEPLOYMENTS, deploy["metadata"]["name"], {"status": status},
                                    deploy["metadata"]["namespace"], subresource="status")
        await self._set_revision(deploy, new_rs)
        return status

    def _come_back_at_deadline(self, deploy: dict, progressing: dict, now) -> None:
        if progressing.get("reason") != "ReplicaSetUpdated":
            return
        left = du.seconds_left(progressing, int(deploy["spec"].get("progressDeadlineSeconds", 600)), now)
        if left != float("inf"):
            self.queue.add_after(object_key(deploy), max(0.0, left) + 1.0)

    async def _set_revision(self, deploy: dict, new_rs: Optional[dict]) -> None:
        """The deployment carries its new RS's revision annotation, as Kubernetes does."""
        if new_rs is None:
            return
        revision = (new_rs["metadata"].get("annotations") or {}).get(du.REVISION)
        if revision and (deploy["metadata"].get("annotations") or {}).get(du.REVISION) != revision:
            await self.client.patch(DEPLOYMENTS, deploy["metadata"]["name"],
                                    {"metadata": {"annotations": {du.REVISION: revision}}},
                                    deploy["metadata"]["namespace"])


def proportional(active: list[dict], replicas: int, new_rs: Optional[dict]) -> list[tuple[dict, int]]:
    """Spread ``replicas`` over ``active`` RSs in proportion to their sizes; the rest
    (rounding) goes to the new RS, else the largest."""
    total = sum(du.replicas_of(rs) for rs in active)
    if not active:
        return []
    if total == 0:
        return [(active[-1], replicas)]
    targets = [(rs, du.replicas_of(rs) * replicas // total) for rs in active]
    rest = replicas - sum(t for _, t in targets)
    lead = new_rs if new_rs in active else max(active, key=du.replicas_of)
    return [(rs, t + rest if rs is lead else t) for rs, t in targets]


def new_controller(ctx: ControllerContext) -> DeploymentController:
    return DeploymentController(ctx)
