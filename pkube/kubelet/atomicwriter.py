"""Kubernetes' AtomicWriter (pkg/volume/util/atomic_writer.go): the files of a Secret,
ConfigMap, downwardAPI or projected volume, swapped as one set.

Layout of a target directory:

    ..2026_12_04_15_47_18.a1b2c3/      the current set of files (a timestamped directory)
    ..data -> ..2026_12_04_15_47_18.a1b2c3
    password -> ..data/password        one symlink per top-level name of the payload
    conf -> ..data/conf                (a nested path "conf/app.ini" is reached through it)

An update writes a new timestamped directory, points `..data_tmp` at it and renames that
over `..data` (rename(2) is atomic), so a reader sees the old set or the new one, never a
mix; then the visible symlinks are fixed up and the old directory removed. The target is
bind-mounted into containers whole, so they see the swap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
TIMESTAMP_FORMAT = "..%Y_%m_%d_%H_%M_%S."
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


class PayloadError(ValueError):
    """A payload path that cannot be written (absolute, with '..', too long)."""


@dataclass(frozen=True)
class FileProjection:
    """One file of a payload: its bytes and its permission bits."""

    data: bytes
    mode: int


def validate_path(path: str) -> None:
    """Raise PayloadError unless `path` is a relative path that stays in the target,
    with Kubernetes' messages."""
    if not path:
        raise PayloadError(f"invalid path: must not be empty: {path!r}")
    if path.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {path}")
    if len(path) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = path.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {path}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {path}")


def clean_payload(payload: dict[str, FileProjection]) -> dict[str, FileProjection]:
    """The payload with normalised paths (`a//b/` -> `a/b`); raises PayloadError."""
    cleaned = {}
    for path, projection in payload.items():
        validate_path(path)
        cleaned[os.path.normpath(path)] = projection
    return cleaned


class AtomicWriter:
    """Writes payloads into one target directory (which must exist). With `gid` (the
    pod's fsGroup) the files and directories written belong to that group."""

    def __init__(self, target_dir: str, gid: int | None = None):
        self.target_dir = target_dir
        self.gid = gid

    def write(self, payload: dict[str, FileProjection]) -> bool:
        """Make the visible files exactly `payload` (path -> FileProjection). Writes nothing
        when the current set already is the payload (same paths, bytes and modes); returns
        whether a new set was swapped in. Raises PayloadError (nothing written) or OSError
        (the previous set stays visible; a later write cleans up what was left)."""
        payload = clean_payload(payload)
        old = self.current()
        changed = old is None or read_tree(os.path.join(self.target_dir, old)) != payload
        if changed:
            self._remove_stale_dirs(keep=old)
            new_dir = self._new_timestamped_dir()
            write_tree(new_dir, payload, self.gid)
            self._swap(os.path.basename(new_dir))
        self._update_visible_links(payload)
        if changed and old:
            shutil.rmtree(os.path.join(self.target_dir, old), ignore_errors=True)
        return changed

    def current(self) -> str | None:
        """The name of the timestamped directory `..data` points to; None before the first write."""
        try:
            return os.readlink(os.path.join(self.target_dir, DATA_DIR))
        except FileNotFoundError:
            return None

    def _new_timestamped_dir(self) -> str:
        prefix = time.strftime(TIMESTAMP_FORMAT, time.gmtime())
        path = tempfile.mkdtemp(prefix=prefix, dir=self.target_dir)
        os.chmod(path, 0o755)   # mkdtemp makes 0700; others must be able to traverse it
        if self.gid is not None:
            os.chown(path, -1, self.gid)
        return path

    def _swap(self, new_name: str) -> None:
        tmp_link = os.path.join(self.target_dir, DATA_DIR_TMP)
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)   # left by a writer that died between symlink and rename
        os.symlink(new_name, tmp_link)
        os.rename(tmp_link, os.path.join(self.target_dir, DATA_DIR))

    def _update_visible_links(self, payload: dict[str, FileProjection]) -> None:
        """One `name -> ..data/name` symlink per top-level name of the payload; links to
        names the payload no longer has are removed. Other entries are left alone."""
        wanted = {path.split("/", 1)[0] for path in payload}
        for name in os.listdir(self.target_dir):
            if name.startswith("..") or name in wanted:
                continue
            path = os.path.join(self.target_dir, name)
            if os.path.islink(path) and os.readlink(path).startswith(DATA_DIR + "/"):
                os.unlink(path)
        for name in wanted:
            link = os.path.join(self.target_dir, name)
            if not os.path.lexists(link):
                os.symlink(f"{DATA_DIR}/{name}", link)

    def _remove_stale_dirs(self, keep: str | None) -> None:
        """Timestamped directories no `..data` points to (a writer died mid-way)."""
        for name in os.listdir(self.target_dir):
            if name.startswith("..") and name not in (DATA_DIR, DATA_DIR_TMP, keep):
                shutil.rmtree(os.path.join(self.target_dir, name), ignore_errors=True)


def write_tree(root: str, payload: dict[str, FileProjection], gid: int | None = None) -> None:
    """Write every file of `payload` under `root` with its mode (whatever the umask) and,
    when given, group `gid`; directories on the way are 0755."""
    for path, projection in payload.items():
        full = os.path.join(root, path)
        parent = os.path.dirname(full)
        if not os.path.isdir(parent):
            os.makedirs(parent)
            _own_dirs(root, parent, gid)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, projection.data)
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, projection.mode)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _own_dirs(root: str, deepest: str, gid: int | None) -> None:
    while deepest != root:
        os.chmod(deepest, 0o755)
        if gid is not None:
            os.chown(deepest, -1, gid)
        deepest = os.path.dirname(deepest)


def read_tree(root: str) -> dict[str, FileProjection] | None:
    """The files under `root` as a payload (relative path -> bytes and mode), None when
    `root` cannot be read."""
    tree = {}
    try:
        for dirpath, _dirs, files in os.walk(root, onerror=_raise):
            for name in files:
                full = os.path.join(dirpath, name)
                with open(full, "rb") as f:
                    tree[os.path.relpath(full, root)] = FileProjection(f.read(), os.fstat(f.fileno()).st_mode & 0o7777)
    except OSError:
        return None
    return tree


def _raise(error: OSError) -> None:
    raise error
