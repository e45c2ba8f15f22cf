"""An image made on the host for programs that run from the host's own installation.

Its root holds no program at all: a directory (or an empty file) for each host path the
containers get bind-mounted read-only at the same place, the host's top-level symlinks (so a
merged-/usr host's ``/lib64/ld-linux-x86-64.so.2`` resolves once ``/usr`` is mounted), the
usual empty mount points (``/proc``, ``/sys``, ``/dev``, ``/tmp``) and a minimal ``/etc``
(root in passwd and group, localhost in hosts). The same paths always give the same tar, so
the same layer digest and the same image; the tag is a digest of the paths, so another
installation (another interpreter, another source tree) gets an image of its own.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from io import BufferedIOBase as BinaryIO   # typing's name for it

HOST_IMAGE_REPO = "pkube/host"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
BASE_DIRECTORIES = {"dev": 0o755, "etc": 0o755, "proc": 0o555, "root": 0o700, "sys": 0o555,
                    "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777}
ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}


class HostImageError(ValueError):
    """A path that cannot be a mount point of the image (relative, missing, or under one of the
    host's top-level symlinks): the message names it."""


def host_links(root: str = "/") -> dict[str, str]:
    """The host's top-level symlinks among TOP_LEVEL_LINKS (name -> target), e.g. lib -> usr/lib."""
    links = {}
    for name in TOP_LEVEL_LINKS:
        path = os.path.join(root, name)
        if os.path.islink(path):
            links[name] = os.readlink(path)
    return links


def mount_points(paths: list[str]) -> dict[str, bool]:
    """The image-relative mount points of absolute host `paths` -> True for a directory, False
    for a file; nested paths dropped (their parent's mount covers them). Raises HostImageError."""
    found: dict[str, bool] = {}
    for path in sorted(set(paths)):
        if not os.path.isabs(path) or not os.path.exists(path):
            raise HostImageError(f"{path}: not an absolute path to something on this host")
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in found):
            continue
        found[path] = os.path.isdir(path)
    return {p.lstrip("/"): is_dir for p, is_dir in found.items() if p != "/"}


def image_ref(points: dict[str, bool], links: dict[str, str], repo: str = HOST_IMAGE_REPO) -> str:
    """`repo:<12 hex digits>`, a digest of the mount points and links."""
    text = "\n".join([*(f"{p} {d}" for p, d in sorted(points.items())),
                      *(f"{n} -> {t}" for n, t in sorted(links.items()))])
    return f"{repo}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def write_rootfs_tar(fileobj: BinaryIO, points: dict[str, bool], links: dict[str, str]) -> None:
    """Write the image's root as an uncompressed tar (every entry at mtime 0, owned by root).
    Raises HostImageError when a mount point lies under one of `links`."""
    for point in points:
        if point.split("/", 1)[0] in links:
            raise HostImageError(f"/{point}: under the host's symlink /{point.split('/', 1)[0]}; "
                                 "give its real path")
    directories = dict(BASE_DIRECTORIES)
    for point, is_dir in points.items():
        for parent in _parents(point if is_dir else os.path.dirname(point)):
            directories.setdefault(parent, 0o755)
    files = {**ETC_FILES, **{p: "" for p, is_dir in points.items() if not is_dir}}
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for name, mode in sorted(directories.items()):
            tf.addfile(_info(name, tarfile.DIRTYPE, mode))
        for name, target in sorted(links.items()):
            info = _info(name, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            tf.addfile(info)
        for name, text in sorted(files.items()):
            data = text.encode()
            info = _info(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def image_config() -> dict:
    """The OCI "config" section: a PATH, no command (the pod gives one)."""
    return {"Env": [DEFAULT_PATH]}


def ensure_host_image(store, paths: list[str], repo: str = HOST_IMAGE_REPO) -> str:
    """The reference of the host image for `paths` in `store` (a runtime.imagestore.ImageStore),
    made first when the store lacks it. Raises HostImageError; safe to call again."""
    from pkube.runtime.errors import ImageNotFound
    points, links = mount_points(paths), host_links()
    ref = image_ref(points, links, repo)
    try:
        store.get(ref)
        return ref
    except ImageNotFound:
        pass
    spool = io.BytesIO()
    write_rootfs_tar(spool, points, links)
    spool.seek(0)
    diff_id = store.layers.import_stream(spool)
    store.new_image(None, image_config(), diff_id, "pkube host image: mount points for the host's installation",
                    ref, created="1970-01-01T00:00:00Z")
    return ref


def _parents(path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']; '' -> []."""
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    return info
