"""The VolumeBinding plugin, table-tested on hand-made claims, volumes and classes (no apiserver)."""

import asyncio

import pytest

from pkube.api import storage
from pkube.client.store import Store
from pkube.scheduler.plugins.volume_binding import (BEING_DELETED, NODE_CONFLICT, NO_VOLUME, NOT_FOUND,
                                              UNBOUND_IMMEDIATE, VolumeBinding)
from pkube.scheduler.types import Code, NodeInfo, PodInfo


class Cache:
    """What the plugin reads of an informer: ``.store``."""

    def __init__(self, *objects):
        self.store = Store()
        for obj in objects:
            self.store.put(obj)


def node(name):
    return NodeInfo.from_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                               "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})


def pod(*claims):
    return PodInfo.from_pod({"metadata": {"name": "p", "namespace": "default"},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                      "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}}
                                                  for c in claims]}})


def claim(name, cls="", volume_name="", deleting=False, annotations=None):
    meta = {"name": name, "namespace": "default", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"storageClassName": cls, "volumeName": volume_name,
                                       "accessModes": ["ReadWriteOnce"],
                                       "resources": {"requests": {"storage": "1Gi"}}}}


def volume(name, node_name=None, cls="", claim_ref=None):
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "hostPath": {"path": "/x"}}
    if node_name:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": "Available"}}


CLASSES = Cache({"metadata": {"name": "local-path"}, "provisioner": storage.LOCAL_PATH_PROVISIONER,
                 "volumeBindingMode": "WaitForFirstConsumer"},
                {"metadata": {"name": "manual"}, "provisioner": "kubernetes.io/no-provisioner",
                 "volumeBindingMode": "WaitForFirstConsumer"},
                {"metadata": {"name": "fast"}, "provisioner": "x.io/fast"})


def plugin(claims=(), volumes=()):
    return VolumeBinding(Cache(*claims), Cache(*volumes), CLASSES)


def verdict(plugin_, pod_, node_name="n1"):
    status = plugin_.filter(pod_, node(node_name))
    return status.code, status.reasons


def test_pods_without_claims_skip_the_plugin():
    assert plugin().skip_filter(pod())
    assert not plugin().skip_filter(pod("data"))


@pytest.mark.parametrize("claims, volumes, expected", [
    ([], [], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NOT_FOUND.format("data"),))),
    ([claim("data", deleting=True)], [], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (BEING_DELETED.format("data"),))),
    ([claim("data", volume_name="pv")], [volume("pv", "n1")], (Code.SUCCESS, ())),
    ([claim("data", volume_name="pv")], [volume("pv", "n2")], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NODE_CONFLICT,))),
    ([claim("data", cls="fast")], [], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (UNBOUND_IMMEDIATE,))),
    ([claim("data")], [volume("pv")], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (UNBOUND_IMMEDIATE,))),
    ([claim("data", cls="local-path")], [], (Code.SUCCESS, ())),
    ([claim("data", cls="manual")], [volume("pv", "n1", cls="manual")], (Code.SUCCESS, ())),
    ([claim("data", cls="manual")], [volume("pv", "n2", cls="manual")], (Code.UNSCHEDULABLE, (NO_VOLUME,))),
])
def test_filter(claims, volumes, expected):
    assert verdict(plugin(claims, volumes), pod("data")) == expected


def test_every_claim_of_the_pod_counts():
    p = plugin([claim("a", cls="local-path"), claim("b", volume_name="pv")], [volume("pv", "n2")])
    assert verdict(p, pod("a", "b"), "n1")[1] == (NODE_CONFLICT,)
    assert verdict(p, pod("a", "b"), "n2") == (Code.SUCCESS, ())


class RecordingClient:
    def __init__(self):
        self.patches = []

    async def patch(self, resource, name, patch, namespace=None):
        self.patches.append((name, namespace, patch))


def test_pre_bind_selects_the_node_for_unbound_wait_for_first_consumer_claims_only():
    p = plugin([claim("wffc", cls="local-path"), claim("bound", cls="local-path", volume_name="pv"),
                claim("chosen", cls="local-path", annotations={storage.ANN_SELECTED_NODE: "n1"})], [])
    client = RecordingClient()
    asyncio.run(p.pre_bind(client, "pvcs", pod("wffc", "bound", "chosen").pod, "n1"))
    assert client.patches == [("wffc", "default",
                               {"metadata": {"annotations": {storage.ANN_SELECTED_NODE: "n1"}}})]
