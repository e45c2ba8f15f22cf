"""StatefulSet controller against the real apiserver, with a fake kubelet (pods Running and Ready
as soon as they exist) and, where claims must go, the garbage collector."""

import asyncio

import pytest

from pkube.client.aio import AsyncApiClient
from pkube.client.errors import Invalid, NotFound
from pkube.client.informer import Informer
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CONTROLLERREVISIONS, PERSISTENTVOLUMECLAIMS, PODS, STATEFULSETS
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers


def statefulset(name, replicas, image="busybox:1", claims=("data",), **spec):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image, "volumeMounts": [
                                      {"name": c, "mountPath": f"/{c}"} for c in claims]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": c}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
                         for c in claims], **spec}}


class PodEvents:
    """The order in which pods of one app appear, become Ready and start terminating."""

    def __init__(self, client, app):
        self.seen = []
        self.informer = Informer(client, PODS, label_selector=f"app={app}")
        self.informer.add_handlers(lambda p: self.note(None, p), self.note, self.gone)

    def note(self, old, new):
        name = new["metadata"]["name"]
        if old is None:
            self.seen.append(("created", name))
        if new["metadata"].get("deletionTimestamp") and not (old or {}).get("metadata", {}).get("deletionTimestamp"):
            self.seen.append(("deleting", name))
        if _ready(new) and not (old and _ready(old)):
            self.seen.append(("ready", name))

    def gone(self, pod):
        """Pods never bound go at once, without a graceful phase."""
        if ("deleting", pod["metadata"]["name"]) not in self.seen[self._last_created(pod):]:
            self.seen.append(("deleting", pod["metadata"]["name"]))

    def _last_created(self, pod):
        created = [i for i, e in enumerate(self.seen) if e == ("created", pod["metadata"]["name"])]
        return created[-1] if created else 0

    def index(self, event):
        return self.seen.index(event)


def _ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def status_is(client, name, **wanted):
    async def check():
        sts = await client.get(STATEFULSETS, name, "default")
        status = sts.get("status") or {}
        ok = status.get("observedGeneration", 0) >= sts["metadata"]["generation"] and all(
            status.get(k, 0) == v for k, v in wanted.items())
        return ok and sts
    return check


async def pod_names(client, app):
    pods = (await client.list(PODS, "default", label_selector=f"app={app}"))["items"]
    return sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))


async def with_events(client, app, body):
    events = PodEvents(client, app)
    task = asyncio.ensure_future(events.informer.run())
    await events.informer.wait_synced()
    try:
        await body(events)
    finally:
        task.cancel()


def test_ordered_ready_starts_pods_in_order_with_identity_and_claims_and_scales_down_in_reverse(apiserver):
    async def scenario(client):
        async def body(events):
            await client.create(STATEFULSETS, statefulset("web", 3))
            sts = await until(status_is(client, "web", replicas=3, readyReplicas=3, updatedReplicas=3))
            order = [events.index(e) for e in (("created", "web-0"), ("ready", "web-0"), ("created", "web-1"),
                                               ("ready", "web-1"), ("created", "web-2"))]
            assert order == sorted(order), events.seen
            assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
            assert sts["status"]["currentReplicas"] == 3 and sts["status"]["availableReplicas"] == 3

            pod = await client.get(PODS, "web-1", "default")
            assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
            labels = pod["metadata"]["labels"]
            assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
            assert labels["apps.kubernetes.io/pod-index"] == "1"
            assert labels["controller-revision-hash"] == sts["status"]["updateRevision"]
            assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod["spec"]["volumes"]
            claims = (await client.list(PERSISTENTVOLUMECLAIMS, "default"))["items"]
            assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1", "data-web-2"]
            assert all(c["metadata"]["labels"] == {"app": "web"} and not c["metadata"].get("ownerReferences")
                       for c in claims)
            revision = await client.get(CONTROLLERREVISIONS, sts["status"]["updateRevision"], "default")
            assert revision["revision"] == 1
            assert revision["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]

            await client.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, "default")
            await until(status_is(client, "web", replicas=1, readyReplicas=1))
            assert events.index(("deleting", "web-2")) < events.index(("deleting", "web-1")), events.seen
            assert await pod_names(client, "web") == ["web-0"]
            claims = (await client.list(PERSISTENTVOLUMECLAIMS, "default"))["items"]
            assert len(claims) == 3                              # whenScaled: Retain
        await with_events(client, "web", body)
    with_controllers(apiserver, scenario, names=("statefulset",))


def test_a_failed_pod_is_made_again_with_the_same_name(apiserver):
    async def scenario(client):
        await client.create(STATEFULSETS, statefulset("db", 2, claims=()))
        await until(status_is(client, "db", readyReplicas=2))
        old = await client.get(PODS, "db-0", "default")
        await client.patch(PODS, "db-0", {"status": {"phase": "Failed"}}, "default", subresource="status")

        async def replaced():
            try:
                pod = await client.get(PODS, "db-0", "default")
            except NotFound:
                return False
            return pod["metadata"]["uid"] != old["metadata"]["uid"] and _ready(pod)
        await until(replaced)
    with_controllers(apiserver, scenario, names=("statefulset",))


def test_partitioned_rolling_update_goes_highest_ordinal_first_and_stops_at_the_partition(apiserver):
    async def scenario(client):
        async def body(events):
            body_ = statefulset("kv", 3, claims=(), updateStrategy={"type": "RollingUpdate",
                                                                     "rollingUpdate": {"partition": 1}})
            await client.create(STATEFULSETS, body_)
            first = await until(status_is(client, "kv", readyReplicas=3))
            await client.patch(STATEFULSETS, "kv", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:2"}]}}}}, "default", patch_type="strategic")
            sts = await until(status_is(client, "kv", updatedReplicas=2, readyReplicas=3, replicas=3))
            assert sts["status"]["currentRevision"] == first["status"]["currentRevision"]
            assert sts["status"]["updateRevision"] != sts["status"]["currentRevision"]
            images = {n: (await client.get(PODS, n, "default"))["spec"]["containers"][0]["image"]
                      for n in ("kv-0", "kv-1", "kv-2")}
            assert images == {"kv-0": "busybox:1", "kv-1": "busybox:2", "kv-2": "busybox:2"}
            assert events.index(("deleting", "kv-2")) < events.index(("deleting", "kv-1")), events.seen
            assert ("deleting", "kv-0") not in events.seen

            await client.patch(STATEFULSETS, "kv", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}},
                               "default")
            done = await until(status_is(client, "kv", updatedReplicas=3, readyReplicas=3, currentReplicas=3))
            assert done["status"]["currentRevision"] == done["status"]["updateRevision"]
            revisions = (await client.list(CONTROLLERREVISIONS, "default"))["items"]
            assert sorted(r["revision"] for r in revisions) == [1, 2]
        await with_events(client, "kv", body)
    with_controllers(apiserver, scenario, names=("statefulset",))


def test_parallel_creates_all_at_once_and_on_delete_waits_for_deletion(apiserver):
    async def scenario(client):
        scenario.kubelet.hold_all = True                    # no pod becomes ready
        await client.create(STATEFULSETS, statefulset("par", 3, claims=(), podManagementPolicy="Parallel",
                                                      updateStrategy={"type": "OnDelete"}))

        async def three():
            return await pod_names(client, "par") == ["par-0", "par-1", "par-2"]
        await until(three)
        scenario.kubelet.hold_all = False
        for name in ("par-0", "par-1", "par-2"):
            await scenario.kubelet.mark_ready(await client.get(PODS, name, "default"))
        await until(status_is(client, "par", readyReplicas=3))
        await client.patch(STATEFULSETS, "par", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, "default", patch_type="strategic")
        sts = await until(status_is(client, "par", readyReplicas=3, updatedReplicas=0))
        assert sts["status"]["updateRevision"] != sts["status"]["currentRevision"]
        await client.delete(PODS, "par-1", "default")

        async def recreated_new():
            try:
                pod = await client.get(PODS, "par-1", "default")
            except NotFound:                                  # between the deletion and the new pod
                return False
            return pod["spec"]["containers"][0]["image"] == "busybox:2" and _ready(pod)
        await until(recreated_new)
        await until(status_is(client, "par", updatedReplicas=1, readyReplicas=3))
        assert (await client.get(PODS, "par-0", "default"))["spec"]["containers"][0]["image"] == "busybox:1"
    with_controllers(apiserver, scenario, names=("statefulset",))


def test_retention_policy_delete_removes_claims_on_scale_down_and_with_the_set(apiserver):
    async def scenario(client):
        body = statefulset("ret", 2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                                           "whenScaled": "Delete"})
        sts = await client.create(STATEFULSETS, body)
        await until(status_is(client, "ret", readyReplicas=2))
        claim = await client.get(PERSISTENTVOLUMECLAIMS, "data-ret-1", "default")
        assert [(r["kind"], r["uid"]) for r in claim["metadata"]["ownerReferences"]] == \
            [("StatefulSet", sts["metadata"]["uid"])]

        await client.patch(STATEFULSETS, "ret", {"spec": {"replicas": 1}}, "default")

        async def claim_names():
            return sorted(c["metadata"]["name"] for c in (await client.list(PERSISTENTVOLUMECLAIMS, "default"))["items"])

        async def only_first():
            return await claim_names() == ["data-ret-0"]
        await until(only_first)                               # the scaled-away pod took its claim along
        await client.delete(STATEFULSETS, "ret", "default")

        async def none_left():
            return await claim_names() == [] and await pod_names(client, "ret") == []
        await until(none_left)
    with_controllers(apiserver, scenario, names=("statefulset", "garbagecollector"))


def test_bad_specs_are_refused_naming_the_field_and_nothing_is_made(apiserver):
    async def scenario(client):
        bad = statefulset("bad", 1, podManagementPolicy="Sometimes")
        bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
        with pytest.raises(Invalid) as refused:
            await client.create(STATEFULSETS, bad)
        message = refused.value.message
        assert message.startswith('StatefulSet.apps "bad" is invalid: ')
        assert 'spec.podManagementPolicy: Unsupported value: "Sometimes"' in message
        assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in message
        good = await client.create(STATEFULSETS, statefulset("good", 1, claims=()))
        with pytest.raises(Invalid) as refused:
            await client.patch(STATEFULSETS, "good", {"spec": {"serviceName": "other"}}, "default")
        assert "updates to statefulset spec for fields other than" in refused.value.message
        assert good["status"] == {"replicas": 0, "availableReplicas": 0}
    _bare(apiserver, scenario)


def _bare(apiserver, scenario):
    """Run ``scenario(client)`` against the apiserver alone."""
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            await scenario(client)
    asyncio.run(main())


def test_ordered_ready_on_hollow_nodes_bound_by_the_scheduler(apiserver):
    from pkube.controllers import statefulset as statefulset_controller
    from tests.integration.test_controllers_daemonset import with_cluster

    async def scenario(client, hollow):
        async def body(events):
            await client.create(STATEFULSETS, statefulset("h", 4, claims=()))
            await until(status_is(client, "h", readyReplicas=4, replicas=4))
            for ordinal in range(1, 4):
                assert events.index(("ready", f"h-{ordinal - 1}")) < events.index(("created", f"h-{ordinal}")), \
                    events.seen
            nodes = {(await client.get(PODS, f"h-{i}", "default"))["spec"]["nodeName"] for i in range(4)}
            assert nodes <= {"h-0", "h-1"} and len(nodes) == 2          # spread by the scheduler
        await with_events(client, "h", body)
    with_cluster(apiserver, 2, scenario, controller=statefulset_controller)
