"""The layer store: content-addressed image layers, stored atomically.

A layer lives under ``<layers root>/<hex>/`` where ``<hex>`` is the sha256 of the uncompressed
layer tar (its OCI *diff_id*). The directory holds ``layer.tar`` (the exact uncompressed bytes,
so save/push reproduce the same digests) and ``diff/`` (the unpacked tree, ready to be an
overlay lowerdir: OCI whiteouts are already overlay whiteouts). Unpacking a layer tar safely
is runtime.layertar's; reading a stack of unpacked layers is runtime.layertree's.

Paths are str: every function taking a path accepts str or os.PathLike, and every path
returned is a str. This module is imported on the path of every `pdocker run` (through
imagestore.py), for the lookups of LayerStore; the unpacking, which a run never needs, is
imported by the methods that store a layer.
"""

from __future__ import annotations

import errno
import os
import time
from io import BufferedIOBase as BinaryIO   # typing's name for it; typing costs start-up time

from pkube.runtime.errors import LayerError
from pkube.runtime.rootfs import remove_file


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
                        from pkube.runtime.layertar import remove_existing
                        remove_existing(entry.path)
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
            from pkube.runtime.layertar import unpack_layer
            diff_id = unpack_layer(fileobj, tmp)
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
            from pkube.runtime.layertar import tar_directory
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
