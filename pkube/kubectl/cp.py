"""``pkubectl cp``: files to and from a container, as a tar stream over exec (as kubectl does:
the container needs a ``tar``).

To a pod: the local file or directory is packed under the destination's base name and
unpacked by ``tar -xmf - -C DIR`` in the container. From a pod: ``tar cf - PATH`` runs in the
container and its output is unpacked locally, the remote path's prefix replaced by the
local destination. Entries that would land outside the destination (``..``, absolute
names) are skipped with a warning, as are symlinks and special files, as kubectl's untar does.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pkube.kubectl.errors import CliError


@dataclass(frozen=True)
class CopySpec:
    """One side of ``cp``: a local path (pod None) or ``[namespace/]pod:path``."""

    path: str
    pod: Optional[str] = None
    namespace: Optional[str] = None


def parse_copy_spec(text: str) -> CopySpec:
    """``ns/pod:/path``, ``pod:/path`` or a local path (a colon after a slash is local:
    ``./a:b``)."""
    head, sep, path = text.partition(":")
    if not sep or not head or head.startswith((".", "/")) or head.count("/") > 1:
        return CopySpec(text)
    namespace, _, pod = head.rpartition("/")
    if not path:
        raise CliError("filepath can not be empty")
    return CopySpec(path, pod, namespace or None)


def pack(source: Path, name: str) -> bytes:
    """A tar of ``source`` (file or directory tree) whose top entry is named ``name``."""
    if not source.exists():
        raise CliError(f"{source} doesn't exist in local filesystem")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.add(str(source), arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, prefix: str, destination: Path, warn: Callable[[str], None]) -> int:
    """Unpack the entries under ``prefix`` (the remote path without its leading ``/``) into
    ``destination``; returns how many were written. Entries that would escape
    ``destination`` are skipped with a warning; CliError for one outside ``prefix``."""
    written = 0
    prefix = prefix.strip("/")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            relative = _relative_name(member.name, prefix)
            target = destination / relative if relative else destination
            if relative is not None and relative.split("/")[0] == "..":
                warn(f"warning: file \"{target}\" is outside target destination, skipping")
                continue
            if member.issym() or member.islnk():
                warn(f"warning: skipping symlink: \"{target}\" -> \"{member.linkname}\"")
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as source, open(target, "wb") as sink:
                    sink.write(source.read())
                os.chmod(target, member.mode & 0o777)
            else:
                continue
            written += 1
    return written


def _relative_name(name: str, prefix: str) -> str:
    """The part of an entry's name below ``prefix`` ("" for the prefix itself; it starts with
    ``..`` when it climbs out). CliError for an entry outside ``prefix`` (kubectl's
    "tar contents corrupted")."""
    clean = posixpath.normpath(name.lstrip("/"))
    if prefix and clean != prefix and not clean.startswith(prefix + "/"):
        raise CliError("tar contents corrupted")
    relative = clean[len(prefix):].lstrip("/") if prefix else clean
    return "" if relative in ("", ".") else posixpath.normpath(relative)


# ---------------------------------------------------------------- over exec

def copy_to_pod(session, pod_path: str, container: Optional[str], source: Path, destination: str, err,
                preserve: bool = True) -> int:
    """Send ``source`` to ``destination`` in the container (into it when it is a directory there);
    0, or the remote tar's exit code. ``preserve`` False is ``--no-preserve``: the files get the
    container user's ownership and umask."""
    from pkube.kubectl.streams import exec_binary, exec_query

    directory = posixpath.dirname(destination.rstrip("/")) or "/"
    name = posixpath.basename(destination.rstrip("/")) or source.name
    if _remote_is_directory(session, pod_path, container, destination):
        directory, name = destination, source.name
    command = ["tar", "-xmf", "-", "-C", directory]
    if not preserve:
        command[1:1] = ["--no-same-permissions", "--no-same-owner"]
    return exec_binary(session, pod_path + "/exec", exec_query(command, container, True, False),
                       pack(source, name), lambda data: None, err)


def _remote_is_directory(session, pod_path: str, container: Optional[str], path: str) -> bool:
    from pkube.kubectl.streams import exec_binary, exec_query

    code = exec_binary(session, pod_path + "/exec", exec_query(["test", "-d", path], container, False, False),
                       None, lambda data: None, io.StringIO())
    return code == 0


def copy_from_pod(session, pod_path: str, container: Optional[str], source: str, destination: Path, err) -> int:
    """Fetch ``source`` from the container into ``destination``; 0, or the remote tar's exit
    code (its stderr passed on)."""
    from pkube.kubectl.streams import exec_binary, exec_query

    chunks: list[bytes] = []
    code = exec_binary(session, pod_path + "/exec", exec_query(["tar", "cf", "-", source], container, False, False),
                       None, chunks.append, err)
    if code != 0:
        return code
    data = b"".join(chunks)
    if not data:
        raise CliError(f"{source}: no such file or directory in the container")
    unpack(data, source, destination, lambda line: (err.write(line + "\n"), err.flush()))
    return 0
