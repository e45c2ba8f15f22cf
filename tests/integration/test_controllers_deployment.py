"""Deployment controller against the real apiserver, with the ReplicaSet controller and a fake kubelet."""

import asyncio
import copy

import pytest

from pkube.client.informer import Informer
from pkube.client.resources import DEPLOYMENTS, PODS, REPLICASETS
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers

REVISION = "deployment.kubernetes.io/revision"


def deployment(name, replicas, image="busybox:1", strategy=None, **spec):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


def rollout_done(client, name):
    """What `kubectl rollout status` checks, as a coroutine function."""
    async def check():
        d = await client.get(DEPLOYMENTS, name, "default")
        s = d.get("status") or {}
        want = d["spec"]["replicas"]
        return (s.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and s.get("updatedReplicas") == want and s.get("replicas") == want
                and s.get("availableReplicas") == want and d)
    return check


def images(pods):
    return sorted(p["spec"]["containers"][0]["image"] for p in pods)


async def live_pods(client, name):
    pods = (await client.list(PODS, "default", label_selector=f"app={name}"))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


class Bounds:
    """Checks, on every pod watch event, replicas + surge >= pods and ready >= replicas − unavailable."""

    def __init__(self, client, app, most, least):
        self.most, self.least, self.app = most, least, app
        self.pods, self.violations, self.events = {}, [], 0
        self.informer = Informer(client, PODS, label_selector=f"app={app}")
        self.informer.add_handlers(self.seen, lambda old, new: self.seen(new), self.gone)

    def seen(self, pod):
        if pod["metadata"].get("deletionTimestamp"):
            return self.gone(pod)
        self.pods[pod["metadata"]["name"]] = pod
        self.check()

    def gone(self, pod):
        self.pods.pop(pod["metadata"]["name"], None)
        self.check()

    def check(self):
        if not self.informer.has_synced():     # the initial list arrives one pod at a time
            return
        self.events += 1
        ready = sum(1 for p in self.pods.values()
                    if any(c["type"] == "Ready" and c["status"] == "True"
                           for c in (p.get("status") or {}).get("conditions") or []))
        if len(self.pods) > self.most or ready < self.least:
            self.violations.append((len(self.pods), ready))


@pytest.mark.parametrize("surge,unavailable,most,least", [
    (1, 1, 7, 5),
    (0, 1, 6, 5),            # no surge: old pods go first
    ("50%", "0%", 9, 6),     # no unavailability: 3 extra pods at a time
])
def test_rolling_update_stays_within_surge_and_unavailable_bounds(apiserver, surge, unavailable, most, least):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}

    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("web", 6, strategy=strategy), "default")
        first = await until(rollout_done(client, "web"))
        assert first["metadata"]["annotations"][REVISION] == "1"
        bounds = Bounds(client, "web", most=most, least=least)
        watcher = asyncio.ensure_future(bounds.informer.run())
        try:
            await bounds.informer.wait_synced()
            await client.patch(DEPLOYMENTS, "web", {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")
            done = await until(rollout_done(client, "web"))
            await until(lambda: _settle(client, "web", 6))
        finally:
            watcher.cancel()
        assert bounds.events > 12 and bounds.violations == []
        assert images(await live_pods(client, "web")) == ["busybox:2"] * 6
        assert done["metadata"]["annotations"][REVISION] == "2"
        conds = {c["type"]: c for c in done["status"]["conditions"]}
        assert conds["Available"]["status"] == "True"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
        rss = (await client.list(REPLICASETS, "default"))["items"]
        by_rev = {rs["metadata"]["annotations"][REVISION]: rs for rs in rss}
        assert by_rev["1"]["spec"]["replicas"] == 0 and by_rev["2"]["spec"]["replicas"] == 6
        new_hash = by_rev["2"]["metadata"]["labels"]["pod-template-hash"]
        assert by_rev["2"]["metadata"]["name"] == f"web-{new_hash}"
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


async def _settle(client, name, count):
    return len(await live_pods(client, name)) == count


def test_rollback_restores_the_previous_template_like_kubectl_undo(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("api", 3), "default")
        await until(rollout_done(client, "api"))
        await client.patch(DEPLOYMENTS, "api", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")
        await until(lambda: _rolled_to(client, "api", "busybox:2", "2"))
        # kubectl 1.32 `rollout undo`: copy revision 1's template (without the hash label) back.
        rss = (await client.list(REPLICASETS, "default"))["items"]
        old = next(rs for rs in rss if rs["metadata"]["annotations"][REVISION] == "1")
        template = copy.deepcopy(old["spec"]["template"])
        del template["metadata"]["labels"]["pod-template-hash"]
        await client.patch(DEPLOYMENTS, "api", [{"op": "replace", "path": "/spec/template", "value": template}],
                           "default", patch_type="json")
        d = await until(lambda: _rolled_to(client, "api", "busybox:1", "3"))
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
        rss = (await client.list(REPLICASETS, "default"))["items"]
        assert len(rss) == 2                       # the old RS came back, no third one
        revived = next(rs for rs in rss if rs["metadata"]["uid"] == old["metadata"]["uid"])
        assert revived["metadata"]["annotations"][REVISION] == "3"
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


async def _rolled_to(client, name, image, revision):
    d = await rollout_done(client, name)()
    if not d or d["metadata"].get("annotations", {}).get(REVISION) != revision:
        return None
    pods = await live_pods(client, name)
    return images(pods) == [image] * d["spec"]["replicas"] and d


def test_recreate_removes_every_old_pod_before_creating_new_ones(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("batch", 3, strategy={"type": "Recreate"}), "default")
        await until(rollout_done(client, "batch"))
        mixed = []
        watcher = Informer(client, PODS, label_selector="app=batch")

        def seen(pod):
            live = [p for p in watcher.store.list() if not p["metadata"].get("deletionTimestamp")]
            if len(set(images(live))) > 1:
                mixed.append(images(live))
        watcher.add_handlers(seen, lambda old, new: seen(new), seen)
        task = asyncio.ensure_future(watcher.run())
        try:
            await watcher.wait_synced()
            await client.patch(DEPLOYMENTS, "batch", {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")
            await until(lambda: _rolled_to(client, "batch", "busybox:2", "2"))
        finally:
            task.cancel()
        assert mixed == []
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


def test_pause_holds_the_rollout_and_resume_finishes_it_and_restart_makes_a_new_rs(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("p", 2), "default")
        await until(rollout_done(client, "p"))
        await client.patch(DEPLOYMENTS, "p", {"spec": {"paused": True, "replicas": 3, "template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")

        async def scaled_but_not_rolled():
            pods = await live_pods(client, "p")
            return images(pods) == ["busybox:1"] * 3
        await until(scaled_but_not_rolled)
        assert len((await client.list(REPLICASETS, "default"))["items"]) == 1
        await client.patch(DEPLOYMENTS, "p", {"spec": {"paused": False}}, "default")
        await until(lambda: _rolled_to(client, "p", "busybox:2", "2"))
        await client.patch(DEPLOYMENTS, "p", {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}, "default")
        await until(lambda: _rolled_to(client, "p", "busybox:2", "3"))
        assert len((await client.list(REPLICASETS, "default"))["items"]) == 3
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


def test_progress_deadline_exceeded_when_new_pods_never_become_ready(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("stuck", 1, progressDeadlineSeconds=2), "default")
        await until(rollout_done(client, "stuck"))
        scenario.kubelet.hold_all = True
        await client.patch(DEPLOYMENTS, "stuck", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")

        async def exceeded():
            d = await client.get(DEPLOYMENTS, "stuck", "default")
            conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
            return conds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" and conds
        conds = await until(exceeded, timeout=20)
        assert conds["Progressing"]["status"] == "False"
        assert conds["Available"]["status"] == "True"     # the old pod still serves
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


def test_revision_history_limit_prunes_the_oldest_replicasets(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("h", 1, revisionHistoryLimit=1), "default")
        await until(rollout_done(client, "h"))
        for revision, image in ((2, "busybox:2"), (3, "busybox:3"), (4, "busybox:4")):
            await client.patch(DEPLOYMENTS, "h", {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": image}]}}}}, "default")
            await until(lambda: _rolled_to(client, "h", image, str(revision)))

        async def pruned():
            rss = (await client.list(REPLICASETS, "default"))["items"]
            return sorted(rs["metadata"]["annotations"][REVISION] for rs in rss) == ["3", "4"]
        await until(pruned)
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


def test_scaling_in_the_middle_of_a_rollout_is_proportional_and_the_rollout_finishes(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("mid", 4), "default")
        await until(rollout_done(client, "mid"))
        scenario.kubelet.hold_all = True            # new pods never get ready: the rollout stalls
        await client.patch(DEPLOYMENTS, "mid", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, "default")

        async def stalled():
            rss = (await client.list(REPLICASETS, "default"))["items"]
            sizes = sorted(rs["spec"]["replicas"] for rs in rss)
            return sizes == [2, 3]                   # old 3 (one unavailable), new 2 (surge 1)
        await until(stalled)

        async def reported():   # the controller has seen its own scaling and reports the stall
            dep = await client.get(DEPLOYMENTS, "mid", "default")
            status = dep.get("status") or {}
            return (status.get("observedGeneration") == dep["metadata"]["generation"]
                    and status.get("updatedReplicas") == 2 and status.get("replicas") == 5)
        await until(reported)
        assert await stalled()
        await client.patch(DEPLOYMENTS, "mid", {"spec": {"replicas": 10}}, "default")

        async def spread():
            rss = (await client.list(REPLICASETS, "default"))["items"]
            sizes = {rs["metadata"]["annotations"][REVISION]: rs["spec"]["replicas"] for rs in rss}
            desired = {rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] for rs in rss}
            return desired == {"10"} and sizes
        sizes = await until(spread)
        assert sizes["1"] >= 5 and sizes["2"] >= 3   # both grew with their share
        scenario.kubelet.hold_all = False
        for pod in await live_pods(client, "mid"):
            await scenario.kubelet.handle(pod)
        await until(lambda: _rolled_to(client, "mid", "busybox:2", "2"))
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])


def test_deployment_adopts_a_matching_orphan_replicaset_and_scales_to_zero(apiserver):
    async def scenario(client):
        orphan = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": "stray", "labels": {"app": "z"}},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "z"}},
                           "template": {"metadata": {"labels": {"app": "z"}},
                                        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}}
        stray = await client.create(REPLICASETS, orphan, "default")
        created = await client.create(DEPLOYMENTS, deployment("z", 2), "default")
        await until(rollout_done(client, "z"))

        async def adopted():
            rs = await client.get(REPLICASETS, "stray", "default")
            refs = rs["metadata"].get("ownerReferences") or []
            return [r["uid"] for r in refs if r.get("controller")] == [created["metadata"]["uid"]]
        await until(adopted)
        await client.patch(DEPLOYMENTS, "z", {"spec": {"replicas": 0}}, "default")

        async def empty():
            d = await client.get(DEPLOYMENTS, "z", "default")
            s = d.get("status") or {}
            return (s.get("observedGeneration") == d["metadata"]["generation"] and not s.get("replicas")
                    and not await live_pods(client, "z"))
        await until(empty)
        assert (await client.get(REPLICASETS, "stray", "default"))["metadata"]["uid"] == stray["metadata"]["uid"]
    with_controllers(apiserver, scenario, ["replicaset", "deployment"])
