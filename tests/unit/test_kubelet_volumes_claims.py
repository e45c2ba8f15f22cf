"""persistentVolumeClaim volumes in the kubelet: the bound volume's host path, FailedMount while
the claim is missing or unbound, readOnly honoured (fake object source, temp directories)."""

from __future__ import annotations

import asyncio

import pytest

from pkube.kubelet.errors import VolumeError
from pkube.kubelet.volumes import PodVolumes
from tests.helpers.objectsource import DictSource

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"


def claim_pod(read_only: bool = False) -> dict:
    return {"metadata": {"name": "db", "namespace": "default", "uid": UID},
            "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db",
                                                                            "readOnly": read_only}}],
                     "containers": [{"name": "app", "image": "busybox",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}


def bind(source: DictSource, path: str, phase: str = "Bound", volume_type: str = "DirectoryOrCreate") -> None:
    source.objects[("PersistentVolumeClaim", "default", "data-db")] = {
        "metadata": {"name": "data-db", "namespace": "default"},
        "spec": {"volumeName": "pvc-1" if phase == "Bound" else ""}, "status": {"phase": phase}}
    source.objects[("PersistentVolume", "default", "pvc-1")] = {
        "metadata": {"name": "pvc-1"}, "spec": {"hostPath": {"path": path, "type": volume_type}}}


@pytest.fixture
def source():
    return DictSource()


@pytest.fixture
def volumes(tmp_path, source):
    return PodVolumes(str(tmp_path / "pods" / UID), source, "node-a")


def failed_mount(volumes: PodVolumes, pod: dict) -> str:
    with pytest.raises(VolumeError) as info:
        asyncio.run(volumes.setup(pod))
    assert info.value.reason == "FailedMount"
    return str(info.value)


def test_a_bound_claim_mounts_its_volume_directory_made_on_first_use(volumes, source, tmp_path):
    path = tmp_path / "storage" / "pvc-1_default_data-db"
    (tmp_path / "storage").mkdir()
    bind(source, str(path))
    asyncio.run(volumes.setup(claim_pod()))
    assert path.is_dir()
    [mount] = volumes.mounts(claim_pod(), claim_pod()["spec"]["containers"][0])
    assert (mount.source, mount.target, mount.readonly) == (str(path), "/data", False)


def test_read_only_claims_are_mounted_read_only(volumes, source, tmp_path):
    bind(source, str(tmp_path))
    pod = claim_pod(read_only=True)
    asyncio.run(volumes.setup(pod))
    assert volumes.mounts(pod, pod["spec"]["containers"][0])[0].readonly


def test_a_missing_claim_is_a_failed_mount(volumes):
    assert failed_mount(volumes, claim_pod()) == \
        'MountVolume.SetUp failed for volume "data" : persistentvolumeclaim "data-db" not found'


def test_an_unbound_claim_is_a_failed_mount_until_it_is_bound(volumes, source, tmp_path):
    bind(source, str(tmp_path), phase="Pending")
    assert failed_mount(volumes, claim_pod()) == (
        'MountVolume.SetUp failed for volume "data" : PVC default/data-db has non-bound phase ("Pending") '
        'or empty pvc.Spec.VolumeName ("")')
    bind(source, str(tmp_path))
    asyncio.run(volumes.setup(claim_pod()))


def test_a_volume_of_another_type_cannot_be_mounted(volumes, source):
    bind(source, "/x")
    source.objects[("PersistentVolume", "default", "pvc-1")]["spec"] = {"nfs": {"server": "s", "path": "/"}}
    assert "only local and hostPath volumes can be mounted" in failed_mount(volumes, claim_pod())
