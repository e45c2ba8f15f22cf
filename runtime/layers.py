"""Content-addressed image layers: safe, atomic unpacking of layer tars, and the reverse.

A layer lives under ``<layers root>/<hex>/`` where ``<hex>`` is the sha256 of the uncompressed
layer tar (its OCI *diff_id*). The directory holds ``layer.tar`` (the exact uncompressed bytes,
so save/push reproduce the same digests) and ``diff/`` (the unpacked tree, ready to be an
overlay lowerdir: OCI whiteouts are already overlay whiteouts).

Unpacking policy (what a hostile tarball meets):
- absolute member names and ``..`` components are refused;
- a member whose parent is a symlink is refused (nothing is ever written through a link);
- symlinks may point anywhere inside the container (absolute targets are container-rooted),
  but a relative target that climbs above the layer root is refused;
- hardlinks must name a file already unpacked from the same layer;
- block and character device nodes are refused (FIFOs are allowed);
- mode bits, setuid/setgid included, are kept as the image author wrote them (as Docker does);
- a refused layer leaves nothing behind: unpacking happens in a temp dir on the same
  filesystem, renamed into place only on success.

Paths are str: every function taking a path accepts str or os.PathLike, and every path
returned is a str. This module is imported on the path of every `pdocker run` (through
images.py): at module level it imports only cheap C-backed modules (no pathlib, collections).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from io import BufferedIOBase as BinaryIO   # typing's name for it; typing costs start-up time
from _collections_abc import Iterator   # (collections.abc would import collections)

from runtime.rootfs import remove_file

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import subprocess
    import tarfile
# Here and below, the modules only some operations need (compression, tar, hashing,
# subprocess) are imported where they are used: `pdocker run` needs none of them.

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
KEPT_XATTR_PREFIXES = ("security.capability", "user.")
COPY_CHUNK = 1 << 20


class LayerError(Exception):
    """A layer could not be stored (bad digest, unreadable archive). Not retryable as is."""


class UnsafeLayer(LayerError):
    """A layer tar tried to escape its directory or create a device: refused, nothing kept."""


# ---------------------------------------------------------------------------------------------
# The store


class LayerStore:
    """Unpacked layers keyed by diff_id ("sha256:<hex>") under ``root`` (str or PathLike;
    ``.root`` and every path returned are str); shared by all images."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)

    def dir(self, diff_id: str) -> str:
        return os.path.join(self.root, _hex(diff_id))

    def diff_dir(self, diff_id: str) -> str:
        """The unpacked tree of a layer (an overlay lowerdir)."""
        return os.path.join(self.dir(diff_id), "diff")

    def tar_path(self, diff_id: str) -> str:
        """The exact uncompressed tar whose sha256 is ``diff_id``."""
        return os.path.join(self.dir(diff_id), "layer.tar")

    def exists(self, diff_id: str) -> bool:
        return os.path.exists(self.tar_path(diff_id)) and os.path.isdir(self.diff_dir(diff_id))

    def size(self, diff_id: str) -> int:
        return os.stat(self.tar_path(diff_id)).st_size

    def age(self, diff_id: str) -> float:
        """Seconds since the layer was stored."""
        try:
            return time.time() - os.stat(self.tar_path(diff_id)).st_mtime
        except FileNotFoundError:
            return 0.0

    def claim(self, diff_id: str) -> bool:
        """True if the layer is stored, and then marks it freshly used, so that an rmi
        running meanwhile does not collect it as an orphan before its image is stored."""
        if not self.exists(diff_id):
            return False
        try:
            os.utime(self.tar_path(diff_id))
        except FileNotFoundError:
            return False
        return True

    def list(self) -> list[str]:
        """The diff_ids of the stored layers, sorted."""
        if not os.path.isdir(self.root):
            return []
        return sorted("sha256:" + name for name in os.listdir(self.root)
                      if not name.startswith(".")
                      and os.path.exists(os.path.join(self.root, name, "layer.tar")))

    def remove(self, diff_id: str) -> None:
        """Delete a layer; idempotent. The caller checks no image still uses it."""
        target = self.dir(diff_id)
        if not os.path.exists(target):
            return
        doomed = os.path.join(self.root, f".rm-{os.urandom(16).hex()}")
        try:
            os.rename(target, doomed)
        except FileNotFoundError:
            return
        import shutil   # here, not at the top: `pdocker run` never needs it
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep(self, older_than: float = 3600.0) -> None:
        """Delete temp entries (``.tmp-*``, ``.rm-*``, ``.spool-*``) that a killed process left
        behind; entries younger than ``older_than`` seconds may still be in use."""
        if not os.path.isdir(self.root):
            return
        now = time.time()
        for entry in os.scandir(self.root):
            if entry.name.startswith((".tmp-", ".rm-", ".spool-")):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                        _remove_existing(entry.path)
                except OSError:
                    pass

    def import_file(self, path: str | os.PathLike, expected_diff_id: str | None = None) -> str:
        with open(path, "rb") as f:
            return self.import_stream(f, expected_diff_id)

    def import_stream(self, fileobj: BinaryIO, expected_diff_id: str | None = None) -> str:
        """Unpack a (possibly compressed) layer tar; return its diff_id.

        Raises UnsafeLayer for hostile content and LayerError for a digest mismatch or a
        corrupt archive; in both cases nothing is left under the store. Importing a layer
        that is already stored keeps the stored copy and returns the same diff_id.
        """
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, f".tmp-{os.urandom(16).hex()}")
        os.makedirs(os.path.join(tmp, "diff"))
        try:
            diff_id = _unpack_and_record(fileobj, tmp)
            if expected_diff_id and expected_diff_id != diff_id:
                raise LayerError(f"layer digest mismatch: expected {expected_diff_id}, got {diff_id}")
            self._publish(tmp, diff_id)
            return diff_id
        finally:
            if os.path.exists(tmp):
                import shutil   # here, not at the top: `pdocker run` never needs it
                shutil.rmtree(tmp, ignore_errors=True)

    def import_directory(self, path: str | os.PathLike) -> str:
        """Make a layer from a directory (overlay whiteouts become ``.wh.`` entries)."""
        os.makedirs(self.root, exist_ok=True)
        spool = os.path.join(self.root, f".spool-{os.urandom(16).hex()}.tar")
        try:
            with open(spool, "wb") as out:
                tar_directory(path, out)
            return self.import_file(spool)
        finally:
            remove_file(spool)

    def _publish(self, tmp: str, diff_id: str) -> None:
        final = self.dir(diff_id)
        if self.claim(diff_id):
            return
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise LayerError(f"store layer {diff_id} at {final}: {e.strerror}") from e


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise LayerError(f"invalid layer digest {digest!r}")
    return hexpart


def _unpack_and_record(fileobj: BinaryIO, tmp: str) -> str:
    """Unpack into tmp/diff while copying the uncompressed tar to tmp/layer.tar; return diff_id."""
    import lzma
    import tarfile
    import zlib
    with open(os.path.join(tmp, "layer.tar"), "wb") as record:
        stream = decompressed(fileobj)
        tee = _HashingTee(stream, record)
        try:
            with tarfile.open(fileobj=tee, mode="r|") as tf:
                unpack_members(tf, os.path.join(tmp, "diff"))
            tee.drain()
        except tarfile.TarError as e:
            raise LayerError(f"unreadable layer archive: {e}") from e
        except (EOFError, lzma.LZMAError, zlib.error) as e:
            raise LayerError(f"unreadable layer archive: {e}") from e
        except OSError as e:
            raise LayerError(f"unpack layer: {e}") from e
        finally:
            close = getattr(stream, "close", None)
            if close and stream is not fileobj:
                close()
    return "sha256:" + tee.sha.hexdigest()


# ---------------------------------------------------------------------------------------------
# Decompression


class _Prefixed(io.RawIOBase):
    """A reader that yields ``head`` then the rest of ``raw`` (undoes a peek on any stream)."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def decompressed(fileobj: BinaryIO) -> BinaryIO:
    """A reader of the uncompressed bytes of a plain, gzip, bzip2, xz or zstd stream."""
    head = _read_exact(fileobj, 6)
    stream = io.BufferedReader(_Prefixed(head, fileobj), COPY_CHUNK)
    if head.startswith(b"\x1f\x8b"):
        import gzip
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if head.startswith(b"BZh"):
        import bz2
        return bz2.BZ2File(stream)
    if head.startswith(b"\xfd7zXZ\x00"):
        import lzma
        return lzma.LZMAFile(stream)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _zstd_reader(stream)
    return stream


def _read_exact(fileobj: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = fileobj.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _zstd_reader(stream: BinaryIO) -> BinaryIO:
    """zstd through the host's ``zstd`` tool (no Python binding is installed)."""
    import shutil   # here, not at the top: `pdocker run` never needs it
    exe = shutil.which("zstd")
    if exe is None:
        raise LayerError("zstd-compressed layer, but no zstd tool is installed")
    import subprocess
    proc = subprocess.Popen([exe, "-dc", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:
        try:
            shutil.copyfileobj(stream, proc.stdin, COPY_CHUNK)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    import threading   # here, not at the top: `pdocker run` never needs it
    threading.Thread(target=feed, daemon=True).start()
    return _ProcessReader(proc)


class _ProcessReader(io.RawIOBase):
    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._proc.stdout.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._proc.stdout.close()
            if self._proc.wait() not in (0, -13):
                raise LayerError("zstd could not decompress the layer")
        super().close()


class _HashingTee:
    """Reader wrapper: hashes and records every byte tarfile consumes."""

    def __init__(self, raw: BinaryIO, record: BinaryIO):
        import hashlib
        self._raw = raw
        self._record = record
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.sha.update(data)
        self._record.write(data)
        return data

    def drain(self) -> None:
        """Consume the tar's trailing padding, which belongs to the digest too."""
        while self.read(COPY_CHUNK):
            pass


# ---------------------------------------------------------------------------------------------
# Safe unpacking


def unpack_members(tf: tarfile.TarFile, dest: str | os.PathLike) -> None:
    """Unpack every member of a streaming tar into dest (an empty directory we own)."""
    dest = os.fspath(dest)
    dir_times: list[tuple[str, tarfile.TarInfo]] = []
    for member in tf:
        rel = safe_member_path(member.name)
        if not rel:
            continue
        parts = rel.split("/")
        parent = _ensure_parents(dest, parts[:-1], member.name)
        name = parts[-1]
        if name == OPAQUE_MARKER:
            _set_xattr(parent, OPAQUE_XATTR, b"y")
        elif name.startswith(WHITEOUT_PREFIX):
            _make_whiteout(parent, name[len(WHITEOUT_PREFIX):], member.name)
        else:
            target = os.path.join(parent, name)
            _unpack_one(tf, member, target, dest)
            if member.isdir():
                dir_times.append((target, member))
    for path, member in reversed(dir_times):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def safe_member_path(name: str) -> str:
    """The normalised relative path of a tar member ("" for the root); refuses escapes."""
    if name.startswith("/"):
        raise UnsafeLayer(f"refused layer: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"refused layer: member {name!r} escapes the layer with '..'")
    return "/".join(parts)


def _ensure_parents(dest: str, parts: list[str], member_name: str) -> str:
    """The real directory holding a member; creates missing parents, never follows links."""
    cur = dest
    for part in parts:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeLayer(f"refused layer: member {member_name!r} would be written through "
                              f"the symlink {os.path.relpath(cur, dest)!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"refused layer: member {member_name!r} has a non-directory parent")
    return cur


def _make_whiteout(parent: str, name: str, member_name: str) -> None:
    if not name or name in (".", ".."):
        raise UnsafeLayer(f"refused layer: invalid whiteout {member_name!r}")
    target = os.path.join(parent, name)
    _remove_existing(target)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _unpack_one(tf: tarfile.TarFile, member: tarfile.TarInfo, target: str, dest: str) -> None:
    if member.ischr() or member.isblk():
        raise UnsafeLayer(f"refused layer: member {member.name!r} is a device node")
    if member.isdir():
        _unpack_dir(member, target)
    elif member.issym():
        _check_symlink(member, dest)
        _remove_existing(target)
        os.symlink(member.linkname, target)
    elif member.islnk():
        source = _hardlink_source(member, dest)
        _remove_existing(target)
        os.link(source, target, follow_symlinks=False)
        return  # a hardlink shares the source's inode: metadata is already right
    elif member.isfifo():
        _remove_existing(target)
        os.mkfifo(target, 0o600)
    elif member.isreg():
        _remove_existing(target)
        _write_file(tf, member, target)
    else:
        raise UnsafeLayer(f"refused layer: member {member.name!r} has unsupported type {member.type!r}")
    _apply_metadata(member, target)


def _unpack_dir(member: tarfile.TarInfo, target: str) -> None:
    try:
        st = os.lstat(target)
        if not stat.S_ISDIR(st.st_mode):
            _remove_existing(target)
            os.mkdir(target, 0o700)
    except FileNotFoundError:
        os.mkdir(target, 0o700)


def _check_symlink(member: tarfile.TarInfo, dest: str) -> None:
    """Absolute targets are container-rooted; relative ones must not climb above the root."""
    link = member.linkname
    if not link:
        raise UnsafeLayer(f"refused layer: symlink {member.name!r} has an empty target")
    if link.startswith("/"):
        return
    depth = len(safe_member_path(member.name).split("/")) - 1
    for part in link.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UnsafeLayer(f"refused layer: symlink {member.name!r} -> {link!r} "
                                  "points outside the layer")
        elif part not in ("", "."):
            depth += 1


def _hardlink_source(member: tarfile.TarInfo, dest: str) -> str:
    link = member.linkname
    if link.startswith("/"):
        raise UnsafeLayer(f"refused layer: hardlink {member.name!r} -> {link!r} points outside the layer")
    try:
        rel = safe_member_path(link)
    except UnsafeLayer:
        raise UnsafeLayer(f"refused layer: hardlink {member.name!r} -> {link!r} points outside "
                          "the layer") from None
    parts = rel.split("/")
    parent = dest
    for part in parts[:-1]:
        parent = os.path.join(parent, part)
        if not os.path.isdir(parent) or os.path.islink(parent):
            raise UnsafeLayer(f"refused layer: hardlink {member.name!r} -> {link!r} does not "
                              "name a file of this layer")
    source = os.path.join(parent, parts[-1])
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise UnsafeLayer(f"refused layer: hardlink {member.name!r} -> {link!r} does not name "
                          "a file of this layer") from None
    if stat.S_ISDIR(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise UnsafeLayer(f"refused layer: hardlink {member.name!r} -> {link!r} names a "
                          "directory or device")
    return source


def _remove_existing(target: str) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil   # here, not at the top: `pdocker run` never needs it
        shutil.rmtree(target)
    else:
        os.unlink(target)


def _write_file(tf: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        src = tf.extractfile(member)
        if src is not None:
            import shutil   # here, not at the top: `pdocker run` never needs it
            shutil.copyfileobj(src, out, COPY_CHUNK)


def _apply_metadata(member: tarfile.TarInfo, target: str) -> None:
    """Owner, mode (setuid kept; chown first since it clears setuid), xattrs, mtime."""
    try:
        os.lchown(target, member.uid, member.gid)
    except PermissionError:
        pass
    if not member.issym():
        os.chmod(target, stat.S_IMODE(member.mode))
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                _keep_xattr(target, key[len("SCHILY.xattr."):], value)
    if not member.isdir():
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _keep_xattr(target: str, name: str, value: str) -> None:
    if not name.startswith(KEPT_XATTR_PREFIXES):
        return
    try:
        os.setxattr(target, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    except OSError:
        pass


def _set_xattr(path: str, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value, follow_symlinks=False)
    except OSError as e:
        raise LayerError(f"set {name} on {path}: {e.strerror}") from e


# ---------------------------------------------------------------------------------------------
# Directory -> tar (commit, export, build steps)


def is_whiteout(st: os.stat_result) -> bool:
    """An overlay whiteout: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def is_opaque(path: str | os.PathLike) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def tar_directory(path: str | os.PathLike, fileobj: BinaryIO) -> None:
    """Write an uncompressed, deterministic (sorted) tar of the tree under ``path``.

    Overlay whiteouts become ``.wh.NAME`` entries and opaque directories get a
    ``.wh..wh..opq`` entry, so an overlay upperdir turns into an OCI layer. Sockets are
    skipped (a tar cannot hold them); links are stored, never followed.
    """
    import tarfile
    root = os.fspath(path)
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for full, rel in walk_tree(root):
            _add_entry(tf, full, rel)


def walk_tree(root: str | os.PathLike, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, relative name) of every entry below root, parents first, sorted; no links followed."""
    for entry in sorted(os.scandir(root), key=_entry_name):
        full, rel = entry.path, f"{prefix}{entry.name}"
        yield full, rel
        if entry.is_dir(follow_symlinks=False):
            yield from walk_tree(full, rel + "/")


def _entry_name(entry: os.DirEntry) -> str:
    return entry.name


def _add_entry(tf: tarfile.TarFile, full: str, rel: str) -> None:
    st = os.lstat(full)
    if stat.S_ISSOCK(st.st_mode):
        return
    if is_whiteout(st):
        head, _, name = rel.rpartition("/")
        tf.addfile(_empty_info(f"{head}/{WHITEOUT_PREFIX}{name}" if head else WHITEOUT_PREFIX + name, st))
        return
    info = tf.gettarinfo(full, arcname=rel)
    info.uname = info.gname = ""
    _add_capability(full, info, st)
    if info.isreg():
        with open(full, "rb") as f:
            tf.addfile(info, f)
    else:
        tf.addfile(info)
    if stat.S_ISDIR(st.st_mode) and is_opaque(full):
        tf.addfile(_empty_info(f"{rel}/{OPAQUE_MARKER}", st))


def _empty_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    import tarfile
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = int(st.st_mtime)
    return info


def _add_capability(full: str, info: tarfile.TarInfo, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        return
    try:
        value = os.getxattr(full, "security.capability", follow_symlinks=False)
    except OSError:
        return
    info.pax_headers["SCHILY.xattr.security.capability"] = value.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# Reading a stack of overlay layers without mounting it


def lookup(layer_dirs: list[str | os.PathLike], rel: str) -> str | None:
    """The path that ``/rel`` resolves to in a stack of layers (lowest first), or None.

    Honours whiteouts and opaque directories; does not follow symlinks.
    """
    parts = [p for p in rel.split("/") if p]
    if not parts:
        return os.fspath(layer_dirs[-1]) if layer_dirs else None
    for layer in reversed(layer_dirs):
        found, stop = _lookup_in_layer(os.fspath(layer), parts)
        if found is not None or stop:
            return found
    return None


def _lookup_in_layer(layer: str, parts: list[str]) -> tuple[str | None, bool]:
    """(path, stop): stop means lower layers are hidden (whiteout or opaque parent)."""
    cur = layer
    opaque = False
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None, opaque
        if is_whiteout(st):
            return None, True
        if i < len(parts) - 1:
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            opaque = opaque or is_opaque(cur)
    return cur, True


def resolve_path(layer_dirs: list[str | os.PathLike], path: str, follow_last: bool = True) -> str:
    """The absolute path that ``path`` names in the merged view of the layers once symlinks
    are followed, scoped to the root as in a chroot (``..`` stops at /). Raises LayerError on
    a symlink loop. Missing components are kept as written."""
    pending = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part in (".", ".."):
            if part == ".." and done:
                done.pop()
            continue
        found = lookup(layer_dirs, "/".join(done + [part])) if pending or follow_last else None
        if found is not None and os.path.islink(found):
            links += 1
            if links > 40:
                raise LayerError(f"resolve {path}: too many levels of symbolic links")
            target = os.readlink(found)
            done = [] if target.startswith("/") else done
            pending = [p for p in target.split("/") if p] + pending
            continue
        done.append(part)
    return "/" + "/".join(done)


def union_entries(layer_dirs: list[str | os.PathLike], rel: str) -> dict[str, str]:
    """The entries of directory ``/rel`` in the merged view: name -> its topmost path."""
    parts = [p for p in rel.split("/") if p]
    result: dict[str, str] = {}
    hidden: set[str] = set()
    for layer in map(os.fspath, reversed(layer_dirs)):
        found, stop = _lookup_in_layer(layer, parts) if parts else (layer, False)
        if found is None or not os.path.isdir(found) or os.path.islink(found):
            if stop or found is not None:
                break
            continue
        for entry in os.scandir(found):
            if entry.name in result or entry.name in hidden:
                continue
            if is_whiteout(entry.stat(follow_symlinks=False)):
                hidden.add(entry.name)
            else:
                result[entry.name] = entry.path
        if is_opaque(found) or _has_opaque_parent(layer, parts):
            break
    return result


def _has_opaque_parent(layer: str, parts: list[str]) -> bool:
    cur = layer
    for part in parts[:-1]:
        cur = os.path.join(cur, part)
        if is_opaque(cur):
            return True
    return False


def changes(upper_dir: str | os.PathLike, layer_dirs: list[str | os.PathLike]) -> list[tuple[str, str]]:
    """Docker-style diff of an upperdir against its lower layers: ("A"|"C"|"D", "/path")."""
    result = []
    for full, rel in walk_tree(upper_dir):
        st = os.lstat(full)
        if is_whiteout(st):
            result.append(("D", "/" + rel))
        elif lookup(layer_dirs, rel) is not None:
            result.append(("C", "/" + rel))
        else:
            result.append(("A", "/" + rel))
    return result


def sha256_file(path: str | os.PathLike) -> str:
    import hashlib
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(COPY_CHUNK), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()
