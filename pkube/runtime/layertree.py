"""Reading a stack of unpacked layers (lowest first, as overlay lowerdirs): overlay whiteouts
and opaque directories, a path's entry through the stack (`lookup`, `resolve_path` with
symlinks resolved inside the image), a directory's merged entries, and the changes of an
upper dir against its layers (`changes`: docker diff).

Paths are str or os.PathLike in, str out.
"""

from __future__ import annotations

import os
import stat
from _collections_abc import Iterator   # (collections.abc would import collections)

from pkube.runtime.errors import LayerError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """An overlay whiteout: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def is_opaque(path: str | os.PathLike) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def walk_tree(root: str | os.PathLike, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, relative name) of every entry below root, parents first, sorted; no links followed."""
    for entry in sorted(os.scandir(root), key=_entry_name):
        full, rel = entry.path, f"{prefix}{entry.name}"
        yield full, rel
        if entry.is_dir(follow_symlinks=False):
            yield from walk_tree(full, rel + "/")


def _entry_name(entry: os.DirEntry) -> str:
    return entry.name


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
