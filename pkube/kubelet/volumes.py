"""The volumes of one pod on this node, laid out as Kubernetes does:

    {pod_dir}/volumes/kubernetes.io~empty-dir/{name}     emptyDir (a tmpfs for medium Memory)
    {pod_dir}/volumes/kubernetes.io~secret/{name}        Secret (on a tmpfs: never on disk)
    {pod_dir}/volumes/kubernetes.io~configmap/{name}     ConfigMap
    {pod_dir}/volumes/kubernetes.io~downward-api/{name}  downwardAPI
    {pod_dir}/volumes/kubernetes.io~projected/{name}     projected (on a tmpfs)

hostPath volumes are the host's path itself; a persistentVolumeClaim is the host path of the
local or hostPath PersistentVolume the claim is bound to (made if missing when the volume's
hostPath type says DirectoryOrCreate, as the local-path provisioner's are), and fails with
FailedMount while the claim is missing or unbound (the pod worker retries). Content volumes (Secret, ConfigMap,
downwardAPI, projected) are written by kubelet.atomicwriter, so `refresh` swaps a new set
in atomically. Containers get each volume directory (or a subPath in it) as a bind mount.

The pod worker calls `setup` before starting containers (and again after a kubelet
restart: it finds what exists), `refresh` on its periodic syncs, `mounts` for each
container, and `teardown` once the pod's containers are gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat

from pkube.api.quantity import QuantityError, memory_bytes
from pkube.kubelet.atomicwriter import AtomicWriter, FileProjection, PayloadError
from pkube.kubelet.envvars import expand
from pkube.kubelet.errors import ConfigError, VolumeError
from pkube.kubelet.hostmounts import HostMounts
from pkube.kubelet.objectsource import ObjectSource, PodObjects
from pkube.kubelet.volumecontent import ContentError, content_payload
from pkube.runtime.spec import Mount, SpecError

log = logging.getLogger(__name__)

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "secret": "kubernetes.io~secret",
    "configMap": "kubernetes.io~configmap",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
CONTENT_TYPES = ("secret", "configMap", "downwardAPI", "projected")   # always mounted read-only
MEMORY_BACKED = ("secret", "projected")    # Kubernetes keeps these on a tmpfs, off the disk
VOLUME_DIR_MODE = 0o777    # Kubernetes' emptyDir: any container user may write
GROUP_READ = 0o440         # what an fsGroup adds to a read-only volume's files
HOST_PATH_CHECKS = {       # type -> (test on st_mode, what the path must be)
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}
_SETUP_ERRORS = (ContentError, PayloadError, QuantityError, OSError)


def volume_type(volume: dict) -> str:
    """The volume's source type ("emptyDir", "hostPath", ...); raises VolumeError for a
    type this kubelet cannot make."""
    for kind in (*PLUGIN_DIRS, "hostPath", "persistentVolumeClaim"):
        if volume.get(kind) is not None:
            return kind
    kind = next((k for k in volume if k != "name"), None)
    raise VolumeError(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                      + (f"volume type {kind} is not supported" if kind else "volume has no source"))


def _failed(volume: dict, error: Exception) -> VolumeError:
    if isinstance(error, OSError) and error.filename and error.strerror:
        error = f"{error.strerror}: {error.filename}"   # not Python's "[Errno 2] ..."
    return VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : {error}')


class PodVolumes:
    """The volumes of one pod on this node. `pod_dir` is `{root_dir}/pods/{uid}`;
    `allocatable` the node's (for resourceFieldRefs of limits a container does not set);
    `host_mounts` mounts the tmpfs (injectable for tests); `tokens` (kubelet.tokens.TokenManager)
    gives the serviceAccountToken projections (None: they are left out)."""

    def __init__(self, pod_dir: str, source: ObjectSource, node_name: str = "", *,
                 allocatable: dict | None = None, host_mounts: HostMounts | None = None, tokens=None):
        self.pod_dir = pod_dir
        self.volumes_dir = os.path.join(pod_dir, "volumes")
        self.source = source
        self.node_name = node_name
        self.allocatable = allocatable
        self.host_mounts = host_mounts or HostMounts()
        self.tokens = tokens
        self.claim_paths: dict[str, str] = {}     # volume name -> host path of its bound claim

    def volume_path(self, volume: dict) -> str:
        """The host path containers get for `volume` (a hostPath's own path)."""
        kind = volume_type(volume)
        if kind == "hostPath":
            return volume["hostPath"].get("path") or ""
        name = volume.get("name") or ""
        if kind == "persistentVolumeClaim":
            if name not in self.claim_paths:
                raise VolumeError(f'volume "{name}": its claim has not been set up')
            return self.claim_paths[name]
        if name in ("", ".", "..") or "/" in name:
            raise VolumeError(f"volume name {name!r}: not a valid directory name")
        return os.path.join(self.volumes_dir, PLUGIN_DIRS[kind], name)

    # ----- setup and refresh -----

    async def setup(self, pod: dict) -> None:
        """Make every volume of the pod: directories, tmpfs mounts, content. Idempotent:
        what exists is kept (after a kubelet restart too) and content is rewritten only
        where it changed. Raises VolumeError (FailedMount) on the first volume that cannot
        be made; the next sync retries."""
        objects = PodObjects(self.source, _namespace(pod))
        for volume in _volumes(pod):
            try:
                await self._setup_volume(pod, volume, objects)
            except _SETUP_ERRORS as e:
                raise _failed(volume, e) from None

    async def _setup_volume(self, pod: dict, volume: dict, objects: PodObjects) -> None:
        kind = volume_type(volume)
        if kind == "hostPath":
            check_host_path(volume["hostPath"].get("path") or "", volume["hostPath"].get("type") or "")
            return
        if kind == "persistentVolumeClaim":
            self.claim_paths[volume["name"]] = await claim_host_path(volume, objects)
            return
        path = self.volume_path(volume)
        if kind == "emptyDir":
            memory = volume["emptyDir"].get("medium") == "Memory"
            size = volume["emptyDir"].get("sizeLimit")
            self._make_dir(path, memory, memory_bytes(size) if memory and size else None)
            share_with_group(path, _fs_group(pod))
            return
        if kind == "projected" and not os.path.isdir(path) and self.tokens is None:
            _note_unwritten_tokens(pod, volume)
        self._make_dir(path, memory=kind in MEMORY_BACKED)
        await self._write_content(pod, volume, objects)

    async def _write_content(self, pod: dict, volume: dict, objects: PodObjects) -> bool:
        """(Re)write a content volume; True when its files changed. With an fsGroup the
        files belong to that group and are group-readable (Kubernetes' SetVolumeOwnership)."""
        payload = await content_payload(pod, volume, objects, self.allocatable, self.tokens)
        gid = _fs_group(pod)
        if gid is not None:
            payload = {path: FileProjection(p.data, p.mode | GROUP_READ) for path, p in payload.items()}
        return AtomicWriter(self.volume_path(volume), gid).write(payload)

    def _make_dir(self, path: str, memory: bool, size: int | None = None) -> None:
        """The volume directory, mode 0777; a tmpfs mounted on it when `memory` (once)."""
        os.makedirs(path, exist_ok=True)
        if os.stat(path).st_mode & 0o777 != VOLUME_DIR_MODE:
            os.chmod(path, VOLUME_DIR_MODE)
        if memory and not self.host_mounts.is_mount_point(path):
            self.host_mounts.mount_tmpfs(path, size)

    async def refresh(self, pod: dict) -> bool:
        """Re-read the Secrets, ConfigMaps and pod fields of the content volumes already set
        up and swap in what changed; True when some volume changed. Every volume is tried;
        then the first failure raises VolumeError (the unchanged content stays in place)."""
        objects = PodObjects(self.source, _namespace(pod))
        changed, failures = False, []
        for volume in _volumes(pod):
            if volume_type(volume) not in CONTENT_TYPES or not os.path.isdir(self.volume_path(volume)):
                continue
            try:
                changed |= await self._write_content(pod, volume, objects)
            except _SETUP_ERRORS as e:
                failures.append(_failed(volume, e))
        if failures:
            raise failures[0]
        return changed

    # ----- containers -----

    def mounts(self, pod: dict, container: dict, env: dict[str, str] | None = None) -> list[Mount]:
        """The bind mounts of `container`'s volumeMounts, in order. `env` is the container's
        environment (from envvars.container_env), which subPathExpr expands. Content
        volumes are always read-only. Raises ConfigError (CreateContainerConfigError) for
        a volumeMount naming no volume or a bad subPath."""
        volumes = {v.get("name"): v for v in _volumes(pod)}
        return [self._mount(volumes, container, mount, env or {}) for mount in container.get("volumeMounts") or []]

    def _mount(self, volumes: dict, container: dict, mount: dict, env: dict[str, str]) -> Mount:
        volume = volumes.get(mount.get("name"))
        if volume is None:
            raise ConfigError(f'cannot find volume "{mount.get("name")}" to mount into container "{container["name"]}"')
        source = self.volume_path(volume)
        sub_path = _expand_sub_path(mount["subPathExpr"], env) if mount.get("subPathExpr") else mount.get("subPath")
        if sub_path:
            source = sub_path_source(source, sub_path)
        readonly = bool(mount.get("readOnly")) or volume_type(volume) in CONTENT_TYPES \
            or bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))
        try:
            return Mount(source, mount.get("mountPath") or "", readonly)
        except SpecError as e:
            raise ConfigError(f'volumeMount "{mount["name"]}" of container "{container["name"]}": {e}') from None

    # ----- teardown -----

    def teardown(self) -> None:
        """Unmount the pod's tmpfs volumes and remove its volume directories; idempotent.
        Called once no container of the pod runs. Refuses (OSError, nothing removed) while
        something is still mounted there; the caller retries."""
        if not os.path.lexists(self.volumes_dir):
            return
        for point in reversed(self.host_mounts.mounts_under(self.volumes_dir)):
            self.host_mounts.unmount(point)
        left = self.host_mounts.mounts_under(self.volumes_dir)
        if left:
            raise OSError(f"remove {self.volumes_dir}: still mounted: {', '.join(left)}")
        shutil.rmtree(self.volumes_dir)


def _volumes(pod: dict) -> list[dict]:
    return (pod.get("spec") or {}).get("volumes") or []


def _namespace(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("namespace") or "default"


def _fs_group(pod: dict) -> int | None:
    group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return None if group is None else int(group)


def share_with_group(path: str, gid: int | None) -> None:
    """An emptyDir of a pod with an fsGroup: owned by that group, setgid so that what
    containers create in it inherits the group (Kubernetes' SetVolumeOwnership on a
    fresh volume)."""
    if gid is not None:
        os.chown(path, -1, gid)
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | stat.S_ISGID)


def _note_unwritten_tokens(pod: dict, volume: dict) -> None:
    paths = [s["serviceAccountToken"].get("path") for s in volume["projected"].get("sources") or []
             if s.get("serviceAccountToken")]
    if paths:
        log.info("pod %s/%s volume %s: serviceAccountToken projection not written yet (paths %s)",
                 _namespace(pod), pod["metadata"].get("name"), volume["name"], ", ".join(map(str, paths)))


async def claim_host_path(volume: dict, objects: PodObjects) -> str:
    """The host directory of the volume a pod's claim is bound to, checked (and made, for a
    DirectoryOrCreate hostPath) as a hostPath volume would be. Raises ContentError (FailedMount)
    while the claim is missing or not bound, or when its volume has no local path."""
    claim_name = volume["persistentVolumeClaim"].get("claimName") or ""
    claim = await objects.get("PersistentVolumeClaim", claim_name)
    if claim is None:
        raise ContentError(f'persistentvolumeclaim "{claim_name}" not found')
    volume_name = (claim.get("spec") or {}).get("volumeName") or ""
    phase = (claim.get("status") or {}).get("phase") or ""
    if not volume_name or phase != "Bound":
        raise ContentError(f'PVC {objects.namespace}/{claim_name} has non-bound phase ("{phase}") '
                           f'or empty pvc.Spec.VolumeName ("{volume_name}")')
    persistent = await objects.get("PersistentVolume", volume_name)
    spec = (persistent or {}).get("spec") or {}
    if persistent is None:
        raise ContentError(f'persistentvolume "{volume_name}" not found')
    if isinstance(spec.get("hostPath"), dict) and spec["hostPath"].get("path"):
        check_host_path(spec["hostPath"]["path"], spec["hostPath"].get("type") or "")
        return spec["hostPath"]["path"]
    if isinstance(spec.get("local"), dict) and spec["local"].get("path"):
        check_host_path(spec["local"]["path"], "Directory")
        return spec["local"]["path"]
    raise ContentError(f'persistentvolume "{volume_name}": only local and hostPath volumes can be mounted')


def check_host_path(path: str, kind: str) -> None:
    """Kubernetes' hostPath type check; the *OrCreate types make what is missing (a
    directory 0755, an empty file 0644, not its parents). Raises ContentError or OSError."""
    if kind not in ("", "DirectoryOrCreate", "FileOrCreate", *HOST_PATH_CHECKS):
        raise ContentError(f"invalid HostPath type {kind!r}")
    if kind == "DirectoryOrCreate" and not os.path.lexists(path):
        os.makedirs(path, 0o755, exist_ok=True)
        os.chmod(path, 0o755)
    elif kind == "FileOrCreate" and not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    test, what = HOST_PATH_CHECKS.get(kind.removesuffix("OrCreate"), (None, ""))
    if test is not None and not _is(path, test):
        raise ContentError(f"hostPath type check failed: {path} is not {what}")


def _is(path: str, test) -> bool:
    try:
        return test(os.stat(path).st_mode)
    except OSError:
        return False


def _expand_sub_path(expression: str, env: dict[str, str]) -> str:
    """subPathExpr with the container's variables; a reference to a variable that is
    unset or empty is an error, as in Kubernetes."""
    missing = set()

    def lookup(name: str) -> str:
        if not env.get(name):
            missing.add(name)
        return env.get(name, "")
    expanded = expand(expression, lookup)
    if missing:
        raise ConfigError(f"missing value for {', '.join(sorted(missing))}")
    return expanded


def sub_path_source(volume_path: str, sub_path: str) -> str:
    """The host path of `sub_path` in a volume, made as a directory (with the volume's
    mode) when missing, as Kubernetes does. Raises ConfigError when it is absolute, has
    '..' or resolves (through symlinks) outside the volume."""
    if sub_path.startswith("/"):
        raise ConfigError(f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise ConfigError(f"error SubPath `{sub_path}` must not contain '..'")
    root = os.path.realpath(volume_path)
    path = os.path.join(volume_path, sub_path)
    _check_inside(root, path, sub_path)
    if not os.path.lexists(path):
        try:
            os.makedirs(path, exist_ok=True)
            os.chmod(path, os.stat(root).st_mode & 0o7777)
        except OSError as e:
            raise ConfigError(f"failed to create subPath directory {sub_path}: {e.strerror}") from None
    return _check_inside(root, path, sub_path)


def _check_inside(root: str, path: str, sub_path: str) -> str:
    real = os.path.realpath(path)
    if real != root and not real.startswith(root + "/"):
        raise ConfigError(f"subpath {sub_path!r} resolves to {real}, outside the volume {root}")
    return real
