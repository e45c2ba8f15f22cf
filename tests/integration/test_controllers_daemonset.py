"""DaemonSet controller against the real apiserver, on hollow nodes, with the real scheduler
binding the daemon pods (they carry a matchFields node affinity)."""

import asyncio

from pkube.client.aio import AsyncApiClient
from pkube.client.informer import Informer
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS
from pkube.cluster.hollow import HollowConfig, HollowNodes, node_names
from pkube.controllers import daemonset as daemonset_controller
from pkube.controllers.base import ControllerContext
from pkube.scheduler.scheduler import Scheduler
from tests.helpers.waiting import until


def daemonset(name, image="busybox:1", strategy=None, **pod_spec):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}], **pod_spec}}}}


def with_cluster(apiserver, nodes, scenario, timeout=60, controller=daemonset_controller):
    """Run ``scenario(client, hollow)`` with ``nodes`` hollow nodes (h-0...), the scheduler and
    the daemonset controller (or another ``controller`` module)."""
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            hollow = HollowNodes(client, node_names(nodes, "h-"), HollowConfig())
            tasks = [asyncio.ensure_future(hollow.run()), asyncio.ensure_future(Scheduler(client).run()),
                     asyncio.ensure_future(run_controller(client, controller))]
            try:
                await asyncio.wait_for(hollow.wait_registered(), 30)
                await asyncio.wait_for(scenario(client, hollow), timeout)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


async def run_controller(client, module):
    """One controller (``module.new_controller``) alone, as the controller-manager runs it."""
    ctx = ControllerContext.create(client)
    controller = module.new_controller(ctx)
    ctx.informers.start()
    events = asyncio.ensure_future(ctx.recorder.run())
    try:
        await controller.run()
    finally:
        events.cancel()
        await ctx.informers.stop()


def rolled_out(client, name, desired):
    """What `kubectl rollout status ds/<name>` waits for, with ``desired`` nodes."""
    async def check():
        ds = await client.get(DAEMONSETS, name, "default")
        s = ds.get("status") or {}
        return (s.get("observedGeneration", 0) >= ds["metadata"]["generation"]
                and s.get("desiredNumberScheduled") == desired and s.get("updatedNumberScheduled") == desired
                and s.get("numberAvailable") == desired and s.get("currentNumberScheduled") == desired
                and ds)
    return check


async def pods_by_node(client, app):
    pods = (await client.list(PODS, "default", label_selector=f"app={app}"))["items"]
    by_node = {}
    for pod in pods:
        if not pod["metadata"].get("deletionTimestamp"):
            by_node.setdefault(pod["spec"].get("nodeName"), []).append(pod)
    return by_node


def one_running_pod_on(nodes):
    def check(by_node):
        return set(by_node) == set(nodes) and all(          # an unbound pod is under None
            len(pods) == 1 and pods[0]["status"].get("phase") == "Running" for pods in by_node.values())
    return check


def test_one_pod_per_node_a_new_node_gets_one_and_a_removed_node_loses_it(apiserver):
    async def scenario(client, hollow):
        await client.create(DAEMONSETS, daemonset("agent"))
        ds = await until(rolled_out(client, "agent", 3))
        assert ds["status"]["numberReady"] == 3 and ds["status"]["numberMisscheduled"] == 0
        by_node = await pods_by_node(client, "agent")
        assert one_running_pod_on(["h-0", "h-1", "h-2"])(by_node)
        pod = by_node["h-1"][0]
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms == {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["h-1"]}]}]}
        tolerated = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
        assert {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule")} <= tolerated
        revision = (await client.list(CONTROLLERREVISIONS, "default"))["items"][0]
        assert pod["metadata"]["labels"]["controller-revision-hash"] == \
            revision["metadata"]["labels"]["controller-revision-hash"]

        extra = HollowNodes(client, ["h-new"], HollowConfig(host_cidr="127.31.0.0/16"))
        task = asyncio.ensure_future(extra.run())
        try:
            await until(rolled_out(client, "agent", 4))
            assert one_running_pod_on(["h-0", "h-1", "h-2", "h-new"])(await pods_by_node(client, "agent"))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.delete(NODES, "h-new")
        await until(rolled_out(client, "agent", 3))

        async def gone_from_removed_node():
            return one_running_pod_on(["h-0", "h-1", "h-2"])(await pods_by_node(client, "agent"))
        await until(gone_from_removed_node)
    with_cluster(apiserver, 3, scenario)


def test_node_selector_and_taints_decide_which_nodes_run_it(apiserver):
    async def scenario(client, hollow):
        await client.patch(NODES, "h-0", {"metadata": {"labels": {"disk": "ssd"}}})
        await client.patch(NODES, "h-1", {"metadata": {"labels": {"disk": "ssd"}},
                                          "spec": {"taints": [{"key": "dedicated", "value": "db",
                                                               "effect": "NoSchedule"}]}})
        await client.create(DAEMONSETS, daemonset("ssd", nodeSelector={"disk": "ssd"}))
        ds = await until(rolled_out(client, "ssd", 1))
        assert sorted(await pods_by_node(client, "ssd")) == ["h-0"]
        assert ds["status"]["numberMisscheduled"] == 0

        await client.patch(NODES, "h-2", {"metadata": {"labels": {"disk": "ssd"}}})    # now eligible
        await until(rolled_out(client, "ssd", 2))

        async def on_h0_h2():
            return one_running_pod_on(["h-0", "h-2"])(await pods_by_node(client, "ssd"))
        await until(on_h0_h2)
        await client.patch(NODES, "h-0", {"metadata": {"labels": {"disk": None}}})     # no longer
        await until(rolled_out(client, "ssd", 1))

        async def on_h2():
            return one_running_pod_on(["h-2"])(await pods_by_node(client, "ssd"))
        await until(on_h2)
        # a toleration of the taint brings h-1 in
        await client.create(DAEMONSETS, daemonset("db", tolerations=[{"key": "dedicated", "operator": "Equal",
                                                                       "value": "db", "effect": "NoSchedule"}]))
        await until(rolled_out(client, "db", 3))
    with_cluster(apiserver, 3, scenario)


class Availability:
    """On every pod event of one app: the fewest nodes with a Ready pod and the most pods."""

    def __init__(self, client, app):
        self.pods, self.fewest_ready_nodes, self.most_pods = {}, None, 0
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
        if not self.informer.has_synced():
            return
        ready = {p["spec"].get("nodeName") for p in self.pods.values()
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])}
        if self.fewest_ready_nodes is None or len(ready) < self.fewest_ready_nodes:
            self.fewest_ready_nodes = len(ready)
        self.most_pods = max(self.most_pods, len(self.pods))


async def roll(client, name, nodes, strategy):
    await client.create(DAEMONSETS, daemonset(name, strategy=strategy))
    await until(rolled_out(client, name, nodes))
    watch = Availability(client, name)
    task = asyncio.ensure_future(watch.informer.run())
    await watch.informer.wait_synced()
    try:
        await client.patch(DAEMONSETS, name, {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, "default", patch_type="strategic")
        await until(rolled_out(client, name, nodes))

        async def all_new():
            by_node = await pods_by_node(client, name)
            return one_running_pod_on([f"h-{i}" for i in range(nodes)])(by_node) and all(
                pods[0]["spec"]["containers"][0]["image"] == "busybox:2" for pods in by_node.values())
        await until(all_new)
    finally:
        task.cancel()
    return watch


def test_rolling_update_with_max_unavailable_keeps_the_rest_available(apiserver):
    async def scenario(client, hollow):
        watch = await roll(client, "mu", 4, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        assert watch.fewest_ready_nodes >= 3 and watch.most_pods <= 4
        revisions = (await client.list(CONTROLLERREVISIONS, "default"))["items"]
        assert sorted(r["revision"] for r in revisions) == [1, 2]
    with_cluster(apiserver, 4, scenario)


def test_rolling_update_with_max_surge_starts_the_new_pod_before_the_old_one_goes(apiserver):
    async def scenario(client, hollow):
        watch = await roll(client, "ms", 4, {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        assert watch.fewest_ready_nodes == 4 and watch.most_pods <= 5
    with_cluster(apiserver, 4, scenario)


def test_on_delete_replaces_only_deleted_pods(apiserver):
    async def scenario(client, hollow):
        await client.create(DAEMONSETS, daemonset("od", strategy={"type": "OnDelete"}))
        await until(rolled_out(client, "od", 2))
        await client.patch(DAEMONSETS, "od", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, "default", patch_type="strategic")

        async def observed_not_updated():
            ds = await client.get(DAEMONSETS, "od", "default")
            s = ds["status"]
            return s.get("observedGeneration") == ds["metadata"]["generation"] and \
                s.get("updatedNumberScheduled") == 0 and s.get("numberAvailable") == 2
        await until(observed_not_updated)
        victim = (await pods_by_node(client, "od"))["h-1"][0]
        await client.delete(PODS, victim["metadata"]["name"], "default")

        async def replaced():
            by_node = await pods_by_node(client, "od")
            pods = by_node.get("h-1") or []
            return one_running_pod_on(["h-0", "h-1"])(by_node) and \
                pods[0]["spec"]["containers"][0]["image"] == "busybox:2" and by_node
        by_node = await until(replaced)
        assert by_node["h-0"][0]["spec"]["containers"][0]["image"] == "busybox:1"
    with_cluster(apiserver, 2, scenario)
