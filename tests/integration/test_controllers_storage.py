"""Storage against the real apiserver (with the storage admission plugins): the binder, Pending
claims with an Event, reclaim Retain and Delete (local-path, its helper pod played by the test
as the node's kubelet would), the protection finalizers, and the scheduler's WaitForFirstConsumer
and Immediate handling. No container runs: pods are only bound or reported Running."""

import asyncio

import pytest

from pkube.api import storage
from pkube.apiserver.admission_storage import storage_admission_plugins
from pkube.client.aio import AsyncApiClient
from pkube.client.errors import NotFound
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import EVENTS, NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS, STORAGECLASSES
from pkube.controllers import localpath
from pkube.controllers.manager import ControllerManager
from pkube.scheduler.scheduler import Scheduler
from tests.helpers.waiting import until
from tests.integration.conftest import start_apiserver, stop_apiserver

CONTROLLERS = ["persistentvolume-binder", "volume-protection"]


@pytest.fixture
def storage_apiserver(etcd):
    thread, running = start_apiserver(etcd, bookmark_interval=0.5, admission_plugins_for=storage_admission_plugins)
    try:
        yield running
    finally:
        stop_apiserver(thread)


def run(apiserver, scenario, scheduler=False):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            tasks = [asyncio.ensure_future(ControllerManager(client, CONTROLLERS).run())]
            if scheduler:
                tasks.append(asyncio.ensure_future(Scheduler(client).run()))
            try:
                await asyncio.wait_for(scenario(client), 60)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


def volume(name, size, modes=("ReadWriteOnce",), cls="", policy="Retain"):
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": f"/srv/{name}"}}}


def claim(name, size="1Gi", cls=None):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def local_path_class(default=True):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path",
                         "annotations": {storage.ANN_DEFAULT_CLASS: "true"} if default else {}},
            "provisioner": storage.LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "parameters": {"nodePath": "/var/lib/test/storage"}}


def node(name):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod_with_claim(name, claim_name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]}}


def phase_of(client, resource, name, phase, namespace=None):
    async def check():
        try:
            obj = await client.get(resource, name, namespace)
        except NotFound:
            return None
        return obj if (obj.get("status") or {}).get("phase") == phase else None
    return check


def gone(client, resource, name, namespace=None):
    async def check():
        try:
            await client.get(resource, name, namespace)
            return False
        except NotFound:
            return True
    return check


def event_about(client, name, reason, message=None):
    """The Event of ``reason`` about ``name`` (with ``message`` when given)."""
    async def check():
        events = (await client.list(EVENTS, "default"))["items"]
        return next((e for e in events if e["involvedObject"]["name"] == name and e["reason"] == reason
                     and message in (None, e["message"])), None)
    return check


def test_a_claim_binds_the_smallest_volume_that_fits_on_both_sides(storage_apiserver):
    async def scenario(client):
        for pv in (volume("big", "10Gi"), volume("fits", "2Gi"), volume("small", "1Gi"),
                   volume("read-only", "2Gi", modes=("ReadOnlyMany",))):
            await client.create(PERSISTENTVOLUMES, pv)
        await client.create(PERSISTENTVOLUMECLAIMS, claim("data", "1500Mi", cls=""), "default")
        bound = await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
        assert bound["spec"]["volumeName"] == "fits"
        assert bound["status"]["capacity"] == {"storage": "2Gi"}
        assert bound["metadata"]["annotations"][storage.ANN_BIND_COMPLETED] == "yes"
        assert bound["metadata"]["finalizers"] == [storage.PVC_PROTECTION]
        pv = await until(phase_of(client, PERSISTENTVOLUMES, "fits", "Bound"))
        assert (pv["spec"]["claimRef"]["name"], pv["spec"]["claimRef"]["uid"]) == ("data", bound["metadata"]["uid"])
        assert pv["metadata"]["finalizers"] == [storage.PV_PROTECTION]
        for name in ("big", "small", "read-only"):
            assert await until(phase_of(client, PERSISTENTVOLUMES, name, "Available"))
    run(storage_apiserver, scenario)


def test_a_claim_nothing_satisfies_stays_pending_with_an_event_until_a_volume_comes(storage_apiserver):
    async def scenario(client):
        await client.create(PERSISTENTVOLUMECLAIMS, claim("nothing", "5Gi", cls=""), "default")
        await client.create(PERSISTENTVOLUMECLAIMS, claim("no-class", cls="gold"), "default")
        event = await until(event_about(client, "nothing", "FailedBinding"))
        assert event["message"] == "no persistent volumes available for this claim and no storage class is set"
        event = await until(event_about(client, "no-class", "ProvisioningFailed"))
        assert event["message"] == 'storageclass.storage.k8s.io "gold" not found'
        assert await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "nothing", "Pending", "default"))
        await client.create(PERSISTENTVOLUMES, volume("late", "5Gi"))
        bound = await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "nothing", "Bound", "default"))
        assert bound["spec"]["volumeName"] == "late"
    run(storage_apiserver, scenario)


def test_retain_keeps_a_released_volume_and_protection_holds_a_claim_in_use(storage_apiserver):
    async def scenario(client):
        await client.create(PERSISTENTVOLUMES, volume("kept", "1Gi", policy="Retain"))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("data", cls=""), "default")
        await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
        await client.create(PODS, pod_with_claim("user", "data"), "default")
        await client.delete(PERSISTENTVOLUMES, "kept")          # bound: pv-protection holds it
        await client.delete(PERSISTENTVOLUMECLAIMS, "data", "default")    # in use: pvc-protection holds it
        held = await client.get(PERSISTENTVOLUMECLAIMS, "data", "default")
        assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [storage.PVC_PROTECTION]
        pv = await client.get(PERSISTENTVOLUMES, "kept")
        assert pv["metadata"]["deletionTimestamp"] and pv["status"]["phase"] == "Bound"
        await client.delete(PODS, "user", "default", grace_period_seconds=0)
        assert await until(gone(client, PERSISTENTVOLUMECLAIMS, "data", "default"))
        assert await until(gone(client, PERSISTENTVOLUMES, "kept"))  # Released, no longer protected

        await client.create(PERSISTENTVOLUMES, volume("retained", "1Gi", policy="Retain"))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("again", cls=""), "default")
        await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "again", "Bound", "default"))
        await client.delete(PERSISTENTVOLUMECLAIMS, "again", "default")
        released = await until(phase_of(client, PERSISTENTVOLUMES, "retained", "Released"))
        assert released["spec"]["claimRef"]["name"] == "again"       # kept for the administrator
    run(storage_apiserver, scenario)


def test_wait_for_first_consumer_provisions_on_the_scheduled_node_and_delete_reclaims(storage_apiserver):
    async def scenario(client):
        await client.create(STORAGECLASSES, local_path_class())
        for name in ("n1", "n2"):
            await client.create(NODES, node(name))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("data"), "default")     # the default class
        waiting = await until(event_about(client, "data", "WaitForFirstConsumer"))
        assert waiting["message"] == "waiting for first consumer to be created before binding"
        await client.create(PODS, pod_with_claim("user", "data"), "default")
        pod = await until(_scheduled(client, "user"))
        bound = await until(phase_of(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
        assert bound["spec"]["storageClassName"] == "local-path"
        assert bound["metadata"]["annotations"][storage.ANN_SELECTED_NODE] == pod["spec"]["nodeName"]
        pv = await client.get(PERSISTENTVOLUMES, bound["spec"]["volumeName"])
        assert localpath.volume_node(pv) == pod["spec"]["nodeName"]
        assert pv["spec"]["hostPath"]["path"] == \
            f"/var/lib/test/storage/{pv['metadata']['name']}_default_data"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"

        await client.delete(PODS, "user", "default", grace_period_seconds=0)
        await client.delete(PERSISTENTVOLUMECLAIMS, "data", "default")
        helper_name = localpath.helper_pod_name(pv["metadata"]["name"])
        helper = await until(_exists(client, PODS, helper_name, "kube-system"))
        assert helper["spec"]["nodeName"] == pod["spec"]["nodeName"]
        assert await client.get(PERSISTENTVOLUMES, pv["metadata"]["name"])   # not before the directory is gone
        await client.patch(PODS, helper_name, {"status": {"phase": "Succeeded"}}, "kube-system",
                           subresource="status")       # what the node's kubelet reports once rm -rf ran
        assert await until(gone(client, PERSISTENTVOLUMES, pv["metadata"]["name"]))
        assert await until(gone(client, PODS, helper_name, "kube-system"))
    run(storage_apiserver, scenario, scheduler=True)


def test_an_unbound_immediate_claim_keeps_its_pod_unschedulable(storage_apiserver):
    async def scenario(client):
        await client.create(NODES, node("n1"))
        await client.create(PERSISTENTVOLUMECLAIMS, claim("data", cls=""), "default")
        await client.create(PODS, pod_with_claim("user", "data"), "default")
        # (a scheduler whose cache has not seen the claim yet first says it is not found)
        assert await until(event_about(client, "user", "FailedScheduling",
                                       "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."))
        await client.create(PERSISTENTVOLUMES, volume("pv", "1Gi"))
        assert await until(_scheduled(client, "user"))
    run(storage_apiserver, scenario, scheduler=True)


def _scheduled(client, name):
    async def check():
        pod = await client.get(PODS, name, "default")
        return pod if pod["spec"].get("nodeName") else None
    return check


def _exists(client, resource, name, namespace=None):
    async def check():
        try:
            return await client.get(resource, name, namespace)
        except NotFound:
            return None
    return check
