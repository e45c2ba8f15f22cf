"""Pod volumes on a temp directory with a fake object source and a recording fake of the
host's tmpfs mounts (the real kernel is in tests/system/test_kubelet_volumes.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat

import pytest

from pkube.kubelet.errors import ConfigError, VolumeError
from pkube.kubelet.volumes import PodVolumes
from pkube.runtime.spec import Mount
from tests.helpers.objectsource import DictSource

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


class FakeHostMounts:
    """Records tmpfs mounts by real path; `stuck` paths refuse to unmount."""

    def __init__(self):
        self.points: list[str] = []
        self.sizes: dict[str, int | None] = {}
        self.stuck: set[str] = set()

    def mount_tmpfs(self, path: str, size: int | None = None) -> None:
        self.points.append(os.path.realpath(path))
        self.sizes[os.path.realpath(path)] = size

    def unmount(self, path: str) -> None:
        if path in self.stuck:
            raise OSError(16, f"umount {path}: Device or resource busy")
        self.points.remove(path)

    def mounts_under(self, path: str) -> list[str]:
        real = os.path.realpath(path)
        return [p for p in self.points if p == real or p.startswith(real + "/")]

    def is_mount_point(self, path: str) -> bool:
        return os.path.realpath(path) in self.points


@pytest.fixture
def source():
    return DictSource()


@pytest.fixture
def host_mounts():
    return FakeHostMounts()


@pytest.fixture
def pod_dir(tmp_path):
    return str(tmp_path / "kubelet" / "pods" / UID)


def make_pod(volumes: list[dict], containers: list[dict] | None = None) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": UID, "labels": {"app": "web"}},
            "spec": {"volumes": volumes, "containers": containers or [{"name": "app", "image": "busybox"}]}}


@pytest.fixture
def volumes(pod_dir, source, host_mounts):
    return PodVolumes(pod_dir, source, "node-a", allocatable={"cpu": "2", "memory": "4Gi"}, host_mounts=host_mounts)


def setup(volumes: PodVolumes, pod: dict) -> None:
    asyncio.run(volumes.setup(pod))


def refresh(volumes: PodVolumes, pod: dict) -> bool:
    return asyncio.run(volumes.refresh(pod))


def failed_mount(volumes: PodVolumes, pod: dict) -> str:
    with pytest.raises(VolumeError) as info:
        setup(volumes, pod)
    assert info.value.reason == "FailedMount"
    return str(info.value)


def vdir(pod_dir: str, plugin: str, name: str) -> str:
    return os.path.join(pod_dir, "volumes", f"kubernetes.io~{plugin}", name)


def visible_files(path: str) -> dict[str, bytes]:
    """What a container reading the volume sees: every visible name, through the links."""
    files = {}
    for dirpath, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        for name in names:
            if not name.startswith(".."):
                full = os.path.join(dirpath, name)
                files[os.path.relpath(full, path)] = open(full, "rb").read()
    return files


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ----- emptyDir -----

def test_empty_dir_on_disk_is_a_writable_directory(volumes, pod_dir, host_mounts):
    setup(volumes, make_pod([{"name": "cache", "emptyDir": {}}]))
    path = vdir(pod_dir, "empty-dir", "cache")
    assert os.path.isdir(path) and mode_of(path) == 0o777
    assert host_mounts.points == []


def test_memory_empty_dir_is_one_tmpfs_with_its_size_limit_even_after_a_restart(pod_dir, source, host_mounts, volumes):
    pod = make_pod([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "plain", "emptyDir": {"medium": "Memory"}}])
    setup(volumes, pod)
    setup(volumes, pod)
    setup(PodVolumes(pod_dir, source, host_mounts=host_mounts), pod)   # a kubelet that restarted
    shm, plain = vdir(pod_dir, "empty-dir", "shm"), vdir(pod_dir, "empty-dir", "plain")
    assert host_mounts.points == [os.path.realpath(shm), os.path.realpath(plain)]
    assert host_mounts.sizes == {os.path.realpath(shm): 64 * 2**20, os.path.realpath(plain): None}


def test_a_bad_size_limit_is_a_failed_mount(volumes):
    message = failed_mount(volumes, make_pod([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "lots"}}]))
    assert message.startswith('MountVolume.SetUp failed for volume "shm" : quantities must match')


# ----- secret and configMap -----

def test_secret_volume_has_kubernetes_layout_modes_and_decoded_data(volumes, source, pod_dir, host_mounts):
    source.secret("db", {"password": "hunter2", "user": "admin"})
    setup(volumes, make_pod([{"name": "creds", "secret": {"secretName": "db"}}]))
    path = vdir(pod_dir, "secret", "creds")
    assert visible_files(path) == {"password": b"hunter2", "user": b"admin"}
    data = os.readlink(os.path.join(path, "..data"))
    assert data.startswith("..") and os.path.isdir(os.path.join(path, data))
    assert os.readlink(os.path.join(path, "password")) == "..data/password"
    assert mode_of(os.path.join(path, "password")) == 0o644
    assert host_mounts.points == [os.path.realpath(path)]     # secrets live on a tmpfs


def test_items_choose_keys_paths_and_modes(volumes, source, pod_dir):
    source.secret("db", {"password": "hunter2", "user": "admin"})
    setup(volumes, make_pod([{"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400, "items": [
        {"key": "password", "path": "conf/pw.txt", "mode": 0o600}, {"key": "user", "path": "user"}]}}]))
    path = vdir(pod_dir, "secret", "creds")
    assert visible_files(path) == {"conf/pw.txt": b"hunter2", "user": b"admin"}
    assert os.readlink(os.path.join(path, "conf")) == "..data/conf"
    assert mode_of(os.path.join(path, "conf", "pw.txt")) == 0o600
    assert mode_of(os.path.join(path, "user")) == 0o400


def test_missing_secret_or_key_fails_the_mount_unless_optional(volumes, source, pod_dir):
    assert failed_mount(volumes, make_pod([{"name": "creds", "secret": {"secretName": "db"}}])) == \
        'MountVolume.SetUp failed for volume "creds" : secret "db" not found'
    setup(volumes, make_pod([{"name": "creds", "secret": {"secretName": "db", "optional": True}}]))
    assert visible_files(vdir(pod_dir, "secret", "creds")) == {}
    source.secret("db", {"user": "admin"})
    items = [{"key": "password", "path": "pw"}, {"key": "user", "path": "u"}]
    assert failed_mount(volumes, make_pod([{"name": "other", "secret": {"secretName": "db", "items": items}}])) \
        .endswith(": references non-existent secret key: password")
    setup(volumes, make_pod([{"name": "opt", "secret": {"secretName": "db", "items": items, "optional": True}}]))
    assert visible_files(vdir(pod_dir, "secret", "opt")) == {"u": b"admin"}


def test_config_map_volume_with_binary_data_and_its_errors(volumes, source, pod_dir, host_mounts):
    source.config_map("app", {"app.ini": "[main]\nx=1\n"}, binary={"logo.bin": b"\x00\xff"})
    setup(volumes, make_pod([{"name": "conf", "configMap": {"name": "app"}}]))
    assert visible_files(vdir(pod_dir, "configmap", "conf")) == {"app.ini": b"[main]\nx=1\n", "logo.bin": b"\x00\xff"}
    assert host_mounts.points == []    # configMaps are on disk, as in Kubernetes
    assert failed_mount(volumes, make_pod([{"name": "c", "configMap": {"name": "nope"}}])) == \
        'MountVolume.SetUp failed for volume "c" : configmap "nope" not found'
    assert failed_mount(volumes, make_pod([{"name": "c", "configMap": {"name": "app", "items": [
        {"key": "k", "path": "k"}]}}])).endswith(": configmap references non-existent config key: k")


def test_a_payload_path_that_escapes_is_refused(volumes, source):
    source.config_map("app", {"k": "v"})
    message = failed_mount(volumes, make_pod([{"name": "c", "configMap": {"name": "app", "items": [
        {"key": "k", "path": "../../etc/passwd"}]}}]))
    assert message.endswith("invalid path: must not contain '..': ../../etc/passwd")


# ----- downwardAPI and projected -----

DOWNWARD_ITEMS = [
    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
    {"path": "mem_mi", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
    {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}},
]


def test_downward_api_volume_and_its_refresh_after_a_label_change(volumes, pod_dir):
    pod = make_pod([{"name": "info", "downwardAPI": {"items": DOWNWARD_ITEMS}}],
                   [{"name": "app", "image": "busybox", "resources": {"limits": {"memory": "256Mi"}}}])
    setup(volumes, pod)
    path = vdir(pod_dir, "downward-api", "info")
    assert visible_files(path) == {"labels": b'app="web"', "name": b"web", "mem_mi": b"256", "cpu": b"2"}
    assert refresh(volumes, pod) is False
    pod["metadata"]["labels"]["tier"] = "front"
    assert refresh(volumes, pod) is True
    assert visible_files(path)["labels"] == b'app="web"\ntier="front"'


def test_downward_api_errors_are_reported_together(volumes):
    message = failed_mount(volumes, make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "a", "fieldRef": {"fieldPath": "spec.nodeName"}},
        {"path": "b", "resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}}]}}]))
    assert message.endswith(": [unsupported fieldPath: spec.nodeName, container ghost not found]")


def test_projected_volume_merges_its_sources_and_leaves_tokens_out(volumes, source, pod_dir, host_mounts, caplog):
    source.secret("db", {"password": "hunter2"})
    source.config_map("kube-root-ca.crt", {"ca.crt": "CERT"})
    caplog.set_level(logging.INFO)
    setup(volumes, make_pod([{"name": "kube-api-access", "projected": {"defaultMode": 0o440, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        {"secret": {"name": "db", "items": [{"key": "password", "path": "db/pw", "mode": 0o400}]}},
    ]}}]))
    path = vdir(pod_dir, "projected", "kube-api-access")
    assert visible_files(path) == {"ca.crt": b"CERT", "namespace": b"default", "db/pw": b"hunter2"}
    assert mode_of(os.path.join(path, "ca.crt")) == 0o440 and mode_of(os.path.join(path, "db/pw")) == 0o400
    assert host_mounts.points == [os.path.realpath(path)]
    assert "serviceAccountToken" in caplog.text and "token" in caplog.text


def test_projected_errors_are_reported_together(volumes):
    message = failed_mount(volumes, make_pod([{"name": "p", "projected": {"sources": [
        {"secret": {"name": "a"}}, {"configMap": {"name": "b"}}, {"configMap": {"name": "c", "optional": True}}]}}]))
    assert message == 'MountVolume.SetUp failed for volume "p" : [secret "a" not found, configmap "b" not found]'


# ----- refresh -----

def test_refresh_swaps_a_new_set_in_and_only_when_something_changed(volumes, source, pod_dir):
    source.secret("db", {"password": "one", "old": "x"})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}, {"name": "cache", "emptyDir": {}}])
    setup(volumes, pod)
    path = vdir(pod_dir, "secret", "creds")
    first = os.readlink(os.path.join(path, "..data"))
    assert refresh(volumes, pod) is False
    assert os.readlink(os.path.join(path, "..data")) == first
    source.secret("db", {"password": "two", "new": "y"})
    assert refresh(volumes, pod) is True
    second = os.readlink(os.path.join(path, "..data"))
    assert second != first and not os.path.exists(os.path.join(path, first))
    assert visible_files(path) == {"password": b"two", "new": b"y"}
    assert not os.path.lexists(os.path.join(path, "old"))


def test_a_mode_change_alone_is_a_change(volumes, source, pod_dir):
    source.secret("db", {"password": "one"})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}])
    setup(volumes, pod)
    pod["spec"]["volumes"][0]["secret"]["defaultMode"] = 0o400
    assert refresh(volumes, pod) is True
    assert mode_of(os.path.join(vdir(pod_dir, "secret", "creds"), "password")) == 0o400


def test_a_deleted_secret_keeps_the_old_content_and_the_other_volumes_still_refresh(volumes, source, pod_dir):
    source.secret("db", {"password": "one"})
    source.config_map("app", {"k": "v1"})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}, {"name": "conf", "configMap": {"name": "app"}}])
    setup(volumes, pod)
    source.delete("Secret", "db")
    source.config_map("app", {"k": "v2"})
    with pytest.raises(VolumeError, match='volume "creds" : secret "db" not found'):
        refresh(volumes, pod)
    assert visible_files(vdir(pod_dir, "secret", "creds")) == {"password": b"one"}
    assert visible_files(vdir(pod_dir, "configmap", "conf")) == {"k": b"v2"}


def test_secret_values_are_never_logged(volumes, source, caplog):
    caplog.set_level(logging.DEBUG)
    source.secret("db", {"password": "hunter2"})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}])
    setup(volumes, pod)
    source.secret("db", {"password": "hunter3"})
    refresh(volumes, pod)
    assert "hunter" not in caplog.text


# ----- hostPath -----

def host_path_pod(path, kind: str) -> dict:
    return make_pod([{"name": "host", "hostPath": {"path": str(path), "type": kind}}])


def test_host_path_or_create_types_make_what_is_missing(volumes, tmp_path):
    setup(volumes, host_path_pod(tmp_path / "made" / "dir", "DirectoryOrCreate"))
    assert (tmp_path / "made" / "dir").is_dir() and mode_of(tmp_path / "made" / "dir") == 0o755
    setup(volumes, host_path_pod(tmp_path / "file", "FileOrCreate"))
    assert (tmp_path / "file").read_bytes() == b""
    assert failed_mount(volumes, host_path_pod(tmp_path / "no" / "file", "FileOrCreate")).endswith(
        f": No such file or directory: {tmp_path}/no/file")


@pytest.mark.parametrize("kind, target, message", [
    ("Directory", "file", "is not a directory"),
    ("Directory", "missing", "is not a directory"),
    ("DirectoryOrCreate", "file", "is not a directory"),
    ("File", "dir", "is not a file"),
    ("FileOrCreate", "dir", "is not a file"),
    ("Socket", "file", "is not a socket file"),
    ("CharDevice", "file", "is not a character device"),
    ("BlockDevice", "/dev/null", "is not a block device"),
])
def test_host_path_type_checks_fail_with_kubernetes_messages(volumes, tmp_path, kind, target, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    assert failed_mount(volumes, host_path_pod(path, kind)) == \
        f'MountVolume.SetUp failed for volume "host" : hostPath type check failed: {path} is not {message.split("is not ")[1]}'


def test_host_path_types_that_match(volumes, tmp_path):
    (tmp_path / "file").write_text("x")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for kind, path in [("Directory", tmp_path), ("File", tmp_path / "file"), ("Socket", tmp_path / "sock"),
                           ("CharDevice", "/dev/null"), ("", tmp_path / "absent")]:
            setup(volumes, host_path_pod(path, kind))
    assert not (tmp_path / "absent").exists()


def test_unsupported_volume_types_fail_clearly(volumes):
    assert failed_mount(volumes, make_pod([{"name": "data", "nfs": {"server": "nfs", "path": "/"}}])) == \
        'MountVolume.SetUp failed for volume "data" : volume type nfs is not supported'


# ----- mounts -----

def test_mounts_of_a_container(volumes, source, pod_dir, tmp_path):
    source.secret("db", {"password": "pw"})
    pod = make_pod([{"name": "cache", "emptyDir": {}}, {"name": "creds", "secret": {"secretName": "db"}},
                    {"name": "host", "hostPath": {"path": str(tmp_path)}}])
    setup(volumes, pod)
    container = {"name": "app", "volumeMounts": [
        {"name": "cache", "mountPath": "/cache"},
        {"name": "creds", "mountPath": "/etc/creds", "readOnly": False},
        {"name": "host", "mountPath": "/host", "readOnly": True},
        {"name": "creds", "mountPath": "/etc/pw", "subPath": "password"}]}
    secret_dir = vdir(pod_dir, "secret", "creds")
    data = os.readlink(os.path.join(secret_dir, "..data"))
    assert volumes.mounts(pod, container) == [
        Mount(vdir(pod_dir, "empty-dir", "cache"), "/cache", False),
        Mount(secret_dir, "/etc/creds", True),                 # content volumes are always read-only
        Mount(str(tmp_path), "/host", True),
        Mount(os.path.realpath(os.path.join(secret_dir, data, "password")), "/etc/pw", True),
    ]
    assert volumes.mounts(pod, {"name": "app"}) == []


def test_sub_paths_are_made_in_the_volume(volumes, pod_dir):
    pod = make_pod([{"name": "cache", "emptyDir": {}}])
    setup(volumes, pod)
    container = {"name": "app", "volumeMounts": [
        {"name": "cache", "mountPath": "/a", "subPath": "x/y"},
        {"name": "cache", "mountPath": "/b", "subPathExpr": "pods/$(POD_NAME)"}]}
    mounts = volumes.mounts(pod, container, env={"POD_NAME": "web"})
    root = os.path.realpath(vdir(pod_dir, "empty-dir", "cache"))
    assert [m.source for m in mounts] == [root + "/x/y", root + "/pods/web"]
    assert os.path.isdir(root + "/x/y") and mode_of(root + "/pods/web") == 0o777


@pytest.mark.parametrize("mount, env, message", [
    ({"name": "nope", "mountPath": "/x"}, {}, 'cannot find volume "nope" to mount into container "app"'),
    ({"name": "cache", "mountPath": "/x", "subPath": "../../etc"}, {}, "error SubPath `../../etc` must not contain '..'"),
    ({"name": "cache", "mountPath": "/x", "subPath": "/etc"}, {}, "error SubPath `/etc` must not be an absolute path"),
    ({"name": "cache", "mountPath": "/x", "subPathExpr": "$(POD_NAME)/$(EMPTY)"}, {"EMPTY": ""},
     "missing value for EMPTY, POD_NAME"),
    ({"name": "cache", "mountPath": "/x", "subPathExpr": "$(UP)"}, {"UP": ".."}, "must not contain '..'"),
    ({"name": "cache", "mountPath": "relative"}, {}, "must be absolute"),
])
def test_bad_volume_mounts_are_config_errors(volumes, mount, env, message):
    pod = make_pod([{"name": "cache", "emptyDir": {}}])
    setup(volumes, pod)
    with pytest.raises(ConfigError) as info:
        volumes.mounts(pod, {"name": "app", "volumeMounts": [mount]}, env=env)
    assert info.value.reason == "CreateContainerConfigError" and message in str(info.value)


def test_a_sub_path_cannot_escape_through_a_symlink(volumes, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "escape").symlink_to("/etc")
    pod = make_pod([{"name": "host", "hostPath": {"path": str(host)}}])
    setup(volumes, pod)
    for sub_path in ("escape", "escape/made-here"):
        with pytest.raises(ConfigError, match="outside the volume"):
            volumes.mounts(pod, {"name": "app", "volumeMounts": [{"name": "host", "mountPath": "/x", "subPath": sub_path}]})
    assert not os.path.exists("/etc/made-here")


# ----- teardown -----

def test_teardown_unmounts_and_removes_and_is_idempotent(volumes, source, pod_dir, host_mounts, tmp_path):
    source.secret("db", {"password": "pw"})
    (tmp_path / "host").mkdir()
    setup(volumes, make_pod([{"name": "shm", "emptyDir": {"medium": "Memory"}}, {"name": "cache", "emptyDir": {}},
                             {"name": "creds", "secret": {"secretName": "db"}},
                             {"name": "host", "hostPath": {"path": str(tmp_path / "host")}}]))
    assert len(host_mounts.points) == 2
    volumes.teardown()
    assert host_mounts.points == [] and not os.path.exists(os.path.join(pod_dir, "volumes"))
    assert (tmp_path / "host").is_dir()    # a hostPath is the host's
    volumes.teardown()


def test_teardown_removes_nothing_while_a_mount_stays(volumes, pod_dir, host_mounts):
    setup(volumes, make_pod([{"name": "shm", "emptyDir": {"medium": "Memory"}}]))
    host_mounts.stuck.add(os.path.realpath(vdir(pod_dir, "empty-dir", "shm")))
    with pytest.raises(OSError, match="busy"):
        volumes.teardown()
    assert os.path.isdir(vdir(pod_dir, "empty-dir", "shm"))
    host_mounts.stuck.clear()
    volumes.teardown()
    assert not os.path.exists(os.path.join(pod_dir, "volumes"))


# ----- fsGroup (the group the test runs as: chown to another one needs root, see tests/system) -----

def test_fs_group_makes_secret_files_group_readable_without_spurious_refreshes(volumes, source, pod_dir):
    source.secret("db", {"key": "ssh"})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
                    {"name": "cache", "emptyDir": {}}])
    pod["spec"]["securityContext"] = {"fsGroup": os.getgid()}
    setup(volumes, pod)
    key = os.path.join(vdir(pod_dir, "secret", "creds"), "key")
    assert mode_of(key) == 0o440 and os.stat(key).st_gid == os.getgid()
    assert refresh(volumes, pod) is False
    assert os.stat(vdir(pod_dir, "empty-dir", "cache")).st_mode & 0o7777 == 0o2777
