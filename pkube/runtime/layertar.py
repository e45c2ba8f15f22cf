"""Layer tars in and out: a (possibly compressed) layer tar unpacked safely into a layer's
directory while its diff_id is computed, and a directory written back as a layer tar
(overlay whiteouts as OCI ``.wh.`` entries).

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

Paths are str or os.PathLike in, str out. No `pdocker run` imports this module; the
modules only some operations need (compression, tar, hashing, subprocess) are imported
where they are used.
"""

from __future__ import annotations

import io
import os
import stat
from io import BufferedIOBase as BinaryIO   # typing's name for it; typing costs start-up time

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import subprocess
    import tarfile

from pkube.runtime.errors import LayerError, UnsafeLayer
from pkube.runtime.layertree import OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX, is_opaque, is_whiteout, walk_tree

KEPT_XATTR_PREFIXES = ("security.capability", "user.")
COPY_CHUNK = 1 << 20


def unpack_layer(fileobj: BinaryIO, tmp: str) -> str:
    """Unpack a (possibly compressed) layer tar into tmp/diff while copying its uncompressed
    bytes to tmp/layer.tar; returns its diff_id. Raises UnsafeLayer for hostile content,
    LayerError for a corrupt archive (the caller removes `tmp`)."""
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
    remove_existing(target)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _unpack_one(tf: tarfile.TarFile, member: tarfile.TarInfo, target: str, dest: str) -> None:
    if member.ischr() or member.isblk():
        raise UnsafeLayer(f"refused layer: member {member.name!r} is a device node")
    if member.isdir():
        _unpack_dir(member, target)
    elif member.issym():
        _check_symlink(member, dest)
        remove_existing(target)
        os.symlink(member.linkname, target)
    elif member.islnk():
        source = _hardlink_source(member, dest)
        remove_existing(target)
        os.link(source, target, follow_symlinks=False)
        return  # a hardlink shares the source's inode: metadata is already right
    elif member.isfifo():
        remove_existing(target)
        os.mkfifo(target, 0o600)
    elif member.isreg():
        remove_existing(target)
        _write_file(tf, member, target)
    else:
        raise UnsafeLayer(f"refused layer: member {member.name!r} has unsupported type {member.type!r}")
    _apply_metadata(member, target)


def _unpack_dir(member: tarfile.TarInfo, target: str) -> None:
    try:
        st = os.lstat(target)
        if not stat.S_ISDIR(st.st_mode):
            remove_existing(target)
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


def remove_existing(target: str) -> None:
    """Delete `target`, a file, a link or a whole tree; nothing when it does not exist."""
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


def sha256_file(path: str | os.PathLike) -> str:
    import hashlib
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(COPY_CHUNK), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()
