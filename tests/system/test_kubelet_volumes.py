"""Pod volumes on the real kernel: a memory emptyDir and a Secret on real tmpfs mounts, the
`..data` swap of a refresh, teardown leaving no mount; and a real container that reads the
Secret through the bind mounts PodVolumes gives it, then sees the refreshed value."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from pkube.kubelet.volumes import PodVolumes
from pkube.runtime.spec import ContainerSpec
from tests.helpers.objectsource import DictSource

pytestmark = pytest.mark.root
UID = "5e7a1c2b-0000-4000-8000-00000000abcd"


def proc_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) of every mount, from /proc/mounts."""
    with open("/proc/mounts") as f:
        return [(line.split()[1], line.split()[2], line.split()[3]) for line in f]


def mounts_below(path) -> list[tuple[str, str, str]]:
    prefix = os.path.realpath(path) + "/"
    return [m for m in proc_mounts() if m[0].startswith(prefix)]


@pytest.fixture
def pod_dir(tmp_path):
    """{root}/pods/{uid}; whatever a failed test left mounted under it is unmounted."""
    if os.geteuid() != 0:
        pytest.fail("kubelet volume system tests need root (tmpfs mounts)")
    path = tmp_path / "kubelet" / "pods" / UID
    try:
        yield str(path)
    finally:
        for point, _, _ in reversed(mounts_below(tmp_path)):
            subprocess.run(["umount", "-l", point], check=False)


def pod_with(volumes: list[dict], containers: list[dict] | None = None) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": UID},
            "spec": {"volumes": volumes, "containers": containers or []}}


def test_memory_empty_dir_and_secret_on_tmpfs_refresh_and_teardown(pod_dir):
    source = DictSource()
    source.secret("db", {"password": "one"})
    pod = pod_with([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "creds", "secret": {"secretName": "db"}},
                    {"name": "cache", "emptyDir": {}}])
    volumes = PodVolumes(pod_dir, source)
    asyncio.run(volumes.setup(pod))
    shm = os.path.join(pod_dir, "volumes/kubernetes.io~empty-dir/shm")
    creds = os.path.join(pod_dir, "volumes/kubernetes.io~secret/creds")
    mounted = {point: (fstype, options) for point, fstype, options in mounts_below(pod_dir)}
    assert set(mounted) == {os.path.realpath(shm), os.path.realpath(creds)}
    assert mounted[os.path.realpath(shm)][0] == "tmpfs" and "size=16384k" in mounted[os.path.realpath(shm)][1]
    with open(os.path.join(shm, "scratch"), "w") as f:
        f.write("kept in memory")

    asyncio.run(volumes.setup(pod))       # a second setup (a kubelet restart) mounts nothing more
    assert len(mounts_below(pod_dir)) == 2
    assert open(os.path.join(shm, "scratch")).read() == "kept in memory"

    first = os.readlink(os.path.join(creds, "..data"))
    source.secret("db", {"password": "two"})
    assert asyncio.run(volumes.refresh(pod)) is True
    second = os.readlink(os.path.join(creds, "..data"))
    assert second != first and sorted(os.listdir(creds)) == sorted(["..data", second, "password"])
    assert open(os.path.join(creds, "password")).read() == "two"
    assert asyncio.run(volumes.refresh(pod)) is False

    volumes.teardown()
    assert mounts_below(pod_dir) == [] and not os.path.exists(os.path.join(pod_dir, "volumes"))
    volumes.teardown()


def exec_out(rt, cid: str, *argv: str) -> str:
    result = rt.exec(cid, list(argv))
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def test_a_container_reads_the_secret_and_sees_the_refresh(rt, pod_dir):
    source = DictSource()
    source.secret("db", {"password": "one"})
    container = {"name": "app", "image": "busybox", "volumeMounts": [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "creds", "mountPath": "/etc/pinned-password", "subPath": "password"},
        {"name": "shm", "mountPath": "/dev/shm"}]}
    pod = pod_with([{"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
                    {"name": "shm", "emptyDir": {"medium": "Memory"}}], [container])
    volumes = PodVolumes(pod_dir, source)
    asyncio.run(volumes.setup(pod))
    state = None
    try:
        state = rt.create(ContainerSpec(image="busybox", command=["sleep", "1000"], network="none",
                                        mounts=volumes.mounts(pod, container)))
        rt.start(state.id)
        assert exec_out(rt, state.id, "cat", "/etc/creds/password") == "one"
        assert exec_out(rt, state.id, "stat", "-L", "-c", "%a", "/etc/creds/password") == "400\n"
        assert rt.exec(state.id, ["touch", "/etc/creds/x"]).exit_code != 0        # read-only
        exec_out(rt, state.id, "sh", "-c", "echo shared > /dev/shm/note")
        assert open(os.path.join(pod_dir, "volumes/kubernetes.io~empty-dir/shm/note")).read() == "shared\n"

        source.secret("db", {"password": "two"})
        assert asyncio.run(volumes.refresh(pod)) is True
        assert exec_out(rt, state.id, "cat", "/etc/creds/password") == "two"
        # a subPath mount is of the file it resolved to: it keeps the old value, as in Kubernetes
        assert exec_out(rt, state.id, "cat", "/etc/pinned-password") == "one"
    finally:
        if state is not None:
            rt.remove(state.id, force=True)
        volumes.teardown()
    assert mounts_below(pod_dir) == []


def test_fs_group_lets_a_non_root_user_of_the_group_read_a_0400_secret(rt, pod_dir):
    source = DictSource()
    source.secret("ssh", {"id_rsa": "KEY"})
    container = {"name": "app", "image": "busybox", "volumeMounts": [
        {"name": "ssh", "mountPath": "/ssh"}, {"name": "work", "mountPath": "/work"}]}
    pod = pod_with([{"name": "ssh", "secret": {"secretName": "ssh", "defaultMode": 0o400}},
                    {"name": "work", "emptyDir": {}}], [container])
    pod["spec"]["securityContext"] = {"fsGroup": 2000}
    volumes = PodVolumes(pod_dir, source)
    asyncio.run(volumes.setup(pod))
    state = None
    try:
        state = rt.create(ContainerSpec(image="busybox", command=["sleep", "1000"], network="none", user="1000:2000",
                                        mounts=volumes.mounts(pod, container)))
        rt.start(state.id)
        assert exec_out(rt, state.id, "cat", "/ssh/id_rsa") == "KEY"
        assert exec_out(rt, state.id, "stat", "-L", "-c", "%a %g", "/ssh/id_rsa") == "440 2000\n"
        # a user whose primary group is another: the setgid directory gives the file group 2000
        assert rt.exec(state.id, ["touch", "/work/made"], user="1000:3000").exit_code == 0
        assert os.stat(os.path.join(pod_dir, "volumes/kubernetes.io~empty-dir/work/made")).st_gid == 2000
    finally:
        if state is not None:
            rt.remove(state.id, force=True)
        volumes.teardown()
