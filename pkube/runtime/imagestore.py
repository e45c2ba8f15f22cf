"""The image store: image configs and the tags naming them, over the layer store.

Layout under ``ROOT/images``::

    layers/<hex>/{layer.tar,diff/}   content-addressed layers (see layers.py), shared
    configs/<hex>.json               image configs, exact bytes; image id = sha256 of them
    repositories.json                {"refs": {"busybox:latest": "sha256:..."},
                                      "intermediate": [ids of build-cache images]}
    lock                             flock taken around every change of repositories.json

An image id is the sha256 of its config JSON, so the same image pulled, loaded or pushed and
pulled back keeps the same id. Image references are runtime.reference's; the docker-save
and OCI archives that carry images in and out are runtime.archive's.

Paths are str: every function taking a path accepts str or os.PathLike, and every path
returned (``Image.layer_dirs``, ``ImageStore.root``) is a str. `ImageStore(root).get(ref)` is
on the path of every `pdocker run`: this module imports only cheap C modules and the runtime's
lean ones at module level; what else an operation needs (json, re, tarfile, hashlib, ...) it
imports where it is used.
"""

from __future__ import annotations

import fcntl
import os

from pkube.runtime import jsonlite
from pkube.runtime.errors import ImageConflict, ImageError, ImageNotFound, InvalidReference
from pkube.runtime.layers import LayerStore
from pkube.runtime.records import Record
from pkube.runtime.reference import looks_like_id, normalize_ref, split_ref, stored_ref_key
from pkube.runtime.rootfs import remove_file

ORPHAN_LAYER_AGE = 3600.0  # seconds


def now_rfc3339() -> str:
    import datetime as dt   # here and below, not at the top: `pdocker run` never needs it
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_architecture() -> str:
    import platform   # here and below: imported where used, `pdocker run` needs none of them
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def canonical_json(obj) -> bytes:
    """Sorted keys, compact, ASCII: the exact bytes image ids and manifest digests are the
    sha256 of (so json's own encoder, imported here: `pdocker run` never writes a config)."""
    import json
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_bytes(data: bytes) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Image(Record):
    """One image as stored. ``layer_dirs`` (str paths) are lowest first, ready to be overlay
    lowerdirs; ``repo_digests`` are "name@sha256:<manifest>"."""

    FIELDS = ("id", "repo_tags", "config", "layer_dirs", "created", "size",
              ("diff_ids", []), ("history", []), ("raw_config", {}), ("repo_digests", []))
    FROZEN = True

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]




class ImageStore:
    """Images under ``root`` (= ROOT/images). Safe to use from several processes at once."""

    def __init__(self, root: str | os.PathLike, busybox: str | os.PathLike | None = None):
        """``root`` and ``busybox`` are str or PathLike (``.root``, ``.busybox``, ``.configs``
        are str). ``busybox``: the static busybox the offline busybox image is made from
        (None: the host's, ``runtime.busybox.HOST_BUSYBOX``)."""
        self.root = os.fspath(root)
        self.busybox = os.fspath(busybox) if busybox else None
        self.layers = LayerStore(os.path.join(self.root, "layers"))
        self.configs = os.path.join(self.root, "configs")
        os.makedirs(self.configs, exist_ok=True)

    # -- reading ----------------------------------------------------------------------------

    def get(self, ref: str) -> Image:
        """The image named by a tag, a full id or a unique id prefix. Raises ImageNotFound."""
        return self._image(self.resolve(ref))

    def resolve(self, ref: str) -> str:
        """The image id a reference names: a tag first, then a full id or unique id prefix.
        Raises ImageNotFound."""
        refs = self._read_repositories()["refs"]
        key = stored_ref_key(ref)   # stored keys are valid: an invalid ref matches none
        if key in refs and os.path.exists(self._config_path(refs[key])):
            return refs[key]
        by_id = self._match_id(ref) if looks_like_id(ref) else None
        if by_id:
            return by_id
        raise ImageNotFound(f"No such image: {ref}")

    def exists(self, ref: str) -> bool:
        try:
            self.resolve(ref)
            return True
        except ImageNotFound:
            return False

    def list(self, all: bool = False) -> list[Image]:
        """All images, newest first; untagged build-cache intermediates only with ``all``."""
        repos = self._read_repositories()
        tagged = set(repos["refs"].values())
        hidden = set() if all else set(repos["intermediate"]) - tagged
        images = []
        for image_id in self._stored_ids():
            if image_id in hidden:
                continue
            try:
                images.append(self._image(image_id, repos))
            except ImageNotFound:
                continue  # removed by another process meanwhile
        return sorted(images, key=lambda i: (i.created, i.id), reverse=True)

    def raw_config_bytes(self, image_id: str) -> bytes:
        with open(self._config_path(image_id), "rb") as f:
            return f.read()

    def _stored_ids(self) -> list[str]:
        """The ids of the stored configs ("sha256:<hex>"); temp files are not configs."""
        return ["sha256:" + name[:-len(".json")] for name in os.listdir(self.configs)
                if name.endswith(".json") and not name.startswith(".")]

    def _match_id(self, ref: str) -> str | None:
        hexpart = ref.split(":", 1)[-1]
        if len(hexpart) == 64:
            image_id = "sha256:" + hexpart
            return image_id if os.path.exists(self._config_path(image_id)) else None
        hits = [i for i in self._stored_ids() if i.startswith("sha256:" + hexpart)]
        if len(hits) > 1:
            raise ImageNotFound(f"ambiguous image id prefix {ref!r}: matches {len(hits)} images")
        return hits[0] if hits else None

    def _image(self, image_id: str, repos: dict | None = None) -> Image:
        try:
            raw = jsonlite.loads(self.raw_config_bytes(image_id))
        except FileNotFoundError:
            raise ImageNotFound(f"No such image: {image_id}") from None
        diff_ids = list((raw.get("rootfs") or {}).get("diff_ids") or [])
        refs = _refs_of(repos or self._read_repositories(), image_id)
        tags = [r for r in refs if "@" not in r]
        size = sum(self.layers.size(d) for d in diff_ids if self.layers.exists(d))
        return Image(id=image_id, repo_tags=tags, config=dict(raw.get("config") or {}),
                     layer_dirs=[self.layers.diff_dir(d) for d in diff_ids],
                     created=raw.get("created", ""), size=size, diff_ids=diff_ids,
                     history=list(raw.get("history") or []), raw_config=raw,
                     repo_digests=[r for r in refs if "@" in r])

    def _config_path(self, image_id: str) -> str:
        return os.path.join(self.configs, image_id.split(":", 1)[-1] + ".json")

    # -- writing ----------------------------------------------------------------------------

    def add_config(self, config_bytes: bytes, ref: str | None = None,
                   intermediate: bool = False) -> Image:
        """Store an image config whose layers are all present; tag it if ``ref`` is given."""
        raw = jsonlite.loads(config_bytes)
        for diff_id in (raw.get("rootfs") or {}).get("diff_ids") or []:
            if not self.layers.exists(diff_id):
                raise ImageError(f"image config names layer {diff_id}, which is not in the store")
        image_id = sha256_bytes(config_bytes)
        path = self._config_path(image_id)
        if not os.path.exists(path):
            _atomic_write(path, config_bytes)
        with self._locked_repositories() as repos:
            if ref:
                repos["refs"][normalize_ref(ref)] = image_id
            if intermediate and image_id not in repos["intermediate"]:
                repos["intermediate"].append(image_id)
            elif not intermediate and image_id in repos["intermediate"]:
                repos["intermediate"].remove(image_id)
        return self._image(image_id)

    def new_image(self, parent: Image | None, config: dict, diff_id: str | None,
                  created_by: str, ref: str | None = None, comment: str = "",
                  intermediate: bool = False, created: str | None = None) -> Image:
        """Stack one optional layer and a new config section on ``parent`` (None = scratch)."""
        raw = make_image_config(parent, config, diff_id, created_by, comment, created)
        image = self.add_config(canonical_json(raw), ref, intermediate)
        if parent is not None:
            with self._locked_repositories() as repos:
                repos["parents"][image.id] = parent.id
        return image

    def tag(self, ref: str, new_ref: str) -> None:
        image_id = self.resolve(ref)
        key = normalize_ref(new_ref)
        if "@" in key:
            raise InvalidReference(f"cannot tag with a digest reference: {new_ref!r}")
        with self._locked_repositories() as repos:
            repos["refs"][key] = image_id

    def add_repo_digest(self, name: str, manifest_digest: str, image_id: str) -> None:
        """Record that ``name@manifest_digest`` (as pulled or pushed) is this image."""
        key = normalize_ref(f"{split_ref(name)[0]}@{manifest_digest}")
        with self._locked_repositories() as repos:
            repos["refs"][key] = image_id

    def remove(self, ref: str, force: bool = False, in_use: set[str] | None = None) -> list[str]:
        """Docker's ``rmi``: untag, and delete the image once no tag is left, with the untagged
        build-cache parents that only it used.

        ``in_use`` holds the ids of images that containers use: those are never deleted (with
        ``force`` they are only untagged). Returns the lines ``rmi`` prints.
        """
        image_id = self.resolve(ref)
        in_use = in_use or set()
        with self._locked_repositories() as repos:
            tags = [r for r in _refs_of(repos, image_id) if "@" not in r]
            named = self._named_tag(ref, tags)
            if named and len(tags) > 1:
                del repos["refs"][named]
                return [f"Untagged: {named}"]
            _check_removable(ref, image_id, tags, force, in_use)
            lines = _untag(repos, image_id, digests=image_id not in in_use)
            if image_id in in_use:
                return lines
            deleted_layers: set[str] = set()
            lines += self._delete_chain(repos, image_id, in_use, deleted_layers)
            lines += self._collect_layers(deleted_layers)
        return lines

    def _delete_chain(self, repos: dict, image_id: str, in_use: set[str],
                      deleted_layers: set[str]) -> list[str]:
        """Delete an image, then walk up its parents while they are untagged build-cache
        images that no container and no other child uses. Adds their layers to
        ``deleted_layers``."""
        lines = []
        while image_id:
            deleted_layers.update(self._image(image_id, repos).diff_ids)
            parent = repos["parents"].pop(image_id, None)
            if image_id in repos["intermediate"]:
                repos["intermediate"].remove(image_id)
            remove_file(self._config_path(image_id))
            repos["build_cache"] = {k: v for k, v in repos["build_cache"].items() if v != image_id}
            lines.append(f"Deleted: {image_id}")
            keep = (parent is None or parent in in_use or parent not in repos["intermediate"]
                    or _refs_of(repos, parent) or parent in repos["parents"].values())
            image_id = None if keep else parent
        return lines

    def _named_tag(self, ref: str, tags: list[str]) -> str | None:
        try:
            key = normalize_ref(ref)
        except InvalidReference:
            return None
        return key if key in tags else None

    def _collect_layers(self, candidates: set[str]) -> list[str]:
        """Delete the candidate layers no stored config names any more, and orphan layers
        older than ``ORPHAN_LAYER_AGE`` (left by a crashed import; younger ones may belong to
        an image being pulled or built right now). Returns "Deleted: <diff_id>" lines."""
        used = set()
        for image_id in self._stored_ids():
            raw = jsonlite.loads(self.raw_config_bytes(image_id))
            used.update((raw.get("rootfs") or {}).get("diff_ids") or [])
        removed = []
        for diff_id in self.layers.list():
            if diff_id in used:
                continue
            if diff_id in candidates or self.layers.age(diff_id) > ORPHAN_LAYER_AGE:
                self.layers.remove(diff_id)
                removed.append(f"Deleted: {diff_id}")
        self.layers.sweep()
        return removed

    # -- making images ----------------------------------------------------------------------

    def import_tar(self, path_or_fileobj, ref: str | None = None,
                   changes: list[str] | None = None, message: str = "") -> Image:
        """``docker import``: a rootfs tarball (plain or compressed) becomes a one-layer image.

        ``changes`` are Dockerfile config instructions ("CMD ...", "ENV ...") applied to it.
        """
        if isinstance(path_or_fileobj, (str, os.PathLike)):
            diff_id = self.layers.import_file(path_or_fileobj)
        else:
            diff_id = self.layers.import_stream(path_or_fileobj)
        config = apply_changes({}, changes or [])
        return self.new_image(None, config, diff_id, "import", ref, comment=message)

    def commit(self, upper_dir: str | os.PathLike, parent: Image | None, config: dict,
               ref: str | None = None, comment: str = "", created_by: str = "commit") -> Image:
        """A new image: ``parent`` + the layer made from an overlay upperdir (whiteouts kept)."""
        diff_id = self.layers.import_directory(upper_dir)
        return self.new_image(parent, config, diff_id, created_by, ref, comment)

    def diff(self, upper_dir: str | os.PathLike, parent: Image | None) -> list[tuple[str, str]]:
        from pkube.runtime.layertree import changes   # docker diff only
        return changes(upper_dir, parent.layer_dirs if parent else [])

    def ensure_busybox(self) -> Image:
        """busybox:latest, made offline from the host's static busybox if not yet stored.

        Raises BusyboxMissing (an ImageError) when there is no usable static busybox."""
        from pkube.runtime import busybox as busybox_rootfs   # only when a store has no busybox yet
        try:
            return self.get(busybox_rootfs.BUSYBOX_REF)
        except ImageNotFound:
            pass
        import tempfile
        host = self.busybox or busybox_rootfs.HOST_BUSYBOX
        with tempfile.TemporaryFile(dir=self.root) as spool:
            busybox_rootfs.write_rootfs_tar(spool, host)
            spool.seek(0)
            diff_id = self.layers.import_stream(spool)
        import datetime as dt
        created = dt.datetime.fromtimestamp(busybox_rootfs.created_timestamp(host),
                                            dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.new_image(None, busybox_rootfs.image_config(), diff_id,
                              "pkube busybox from the host's static busybox",
                              busybox_rootfs.BUSYBOX_REF, created=created)

    # -- build cache ------------------------------------------------------------------------

    def build_cache_get(self, key: str) -> str | None:
        """The image id a build step with this cache key made, if that image still exists."""
        image_id = self._read_repositories()["build_cache"].get(key)
        return image_id if image_id and os.path.exists(self._config_path(image_id)) else None

    def build_cache_put(self, key: str, image_id: str) -> None:
        with self._locked_repositories() as repos:
            repos["build_cache"][key] = image_id

    # -- repositories.json ------------------------------------------------------------------

    def _read_repositories(self) -> dict:
        try:
            with open(os.path.join(self.root, "repositories.json"), "rb") as f:
                data = jsonlite.loads(f.read())
        except FileNotFoundError:
            data = {}
        for key, empty in (("refs", {}), ("intermediate", []), ("parents", {}),
                           ("build_cache", {})):
            data.setdefault(key, empty)
        return data

    def _locked_repositories(self) -> "_LockedRepositories":
        """Read-modify-write of repositories.json under an exclusive flock: ``with`` it gives
        the dict, written back on a normal exit if it changed."""
        return _LockedRepositories(self)


class _LockedRepositories:
    """The context manager of ImageStore._locked_repositories (not on the run path, but a
    class keeps contextlib out of this module's imports)."""

    def __init__(self, store: ImageStore):
        self.store = store
        self.lock = None
        self.repos: dict = {}
        self.before = b""

    def __enter__(self) -> dict:
        os.makedirs(self.store.root, exist_ok=True)
        self.lock = open(os.path.join(self.store.root, "lock"), "a+")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            self.repos = self.store._read_repositories()
            self.before = canonical_json(self.repos)
        except BaseException:
            self.lock.close()
            raise
        return self.repos

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and canonical_json(self.repos) != self.before:
                import json   # indented for people who read it; never on the run path
                _atomic_write(os.path.join(self.store.root, "repositories.json"),
                              json.dumps(self.repos, indent=1, sort_keys=True).encode())
        finally:
            self.lock.close()


def _refs_of(repos: dict, image_id: str) -> list[str]:
    return sorted(r for r, i in repos["refs"].items() if i == image_id)


def _check_removable(ref: str, image_id: str, tags: list[str], force: bool,
                     in_use: set[str]) -> None:
    if image_id in in_use and not force:
        raise ImageConflict(f"conflict: unable to remove image {ref} (must force) - "
                            "image is being used by a container")
    if len(tags) > 1 and not force:
        raise ImageConflict(f"conflict: unable to delete {image_id[7:19]} (must be "
                            "forced) - image is referenced in multiple repositories")


def _untag(repos: dict, image_id: str, digests: bool) -> list[str]:
    """Drop the image's tags (and digest references if ``digests``); the ``Untagged`` lines."""
    doomed = [r for r in _refs_of(repos, image_id) if digests or "@" not in r]
    doomed.sort(key=lambda r: "@" in r)
    for ref in doomed:
        del repos["refs"][ref]
    return [f"Untagged: {r}" for r in doomed]


def make_image_config(parent: Image | None, config: dict, diff_id: str | None,
                      created_by: str, comment: str = "", created: str | None = None) -> dict:
    """The full OCI image config of parent + one optional layer with a new config section."""
    base = jsonlite.loads(jsonlite.dumps(parent.raw_config)) if parent else {}
    created = created or now_rfc3339()
    diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
    history = list(base.get("history") or [])
    entry = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if diff_id:
        diff_ids.append(diff_id)
    else:
        entry["empty_layer"] = True
    history.append(entry)
    raw = {k: v for k, v in base.items() if k not in ("container", "container_config", "comment")}
    raw.update({"architecture": base.get("architecture") or host_architecture(),
                "os": base.get("os") or "linux", "created": created,
                "config": {k: v for k, v in config.items() if v not in (None, [], {})},
                "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history})
    if comment:
        raw["comment"] = comment
    return raw


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply Dockerfile config instructions (``import -c``/``commit -c``) to a config section."""
    if not changes:
        return dict(config)
    from pkube.runtime.dockerfile import apply_config_instruction, parse_line
    result = jsonlite.loads(jsonlite.dumps(config))
    for change in changes:
        apply_config_instruction(result, parse_line(change))
    return result




def _atomic_write(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.urandom(16).hex()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

