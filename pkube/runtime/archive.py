"""Image archives: one tar that is both a docker-save archive (manifest.json) and an OCI
image layout (index.json, blobs/), written by `save`; `load` reads either (gzip allowed, from
a pipe too), storing the layers and configs into an ImageStore. The OCI and Docker media
types, and choosing this platform's manifest from an index, serve the registry client too.
"""

from __future__ import annotations

import io
import os
from io import BufferedIOBase as BinaryIO   # typing's name for it; typing costs start-up time
from _collections_abc import Callable   # (collections.abc would import collections)

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import tarfile

from pkube.runtime import jsonlite
from pkube.runtime.errors import ImageError, ImageNotFound, InvalidReference
from pkube.runtime.imagestore import Image, ImageStore, canonical_json, host_architecture, sha256_bytes
from pkube.runtime.reference import normalize_ref

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def save(store: ImageStore, refs: list[str], fileobj: BinaryIO) -> None:
    """`docker save`: the images `refs` name, into one tar that is both a docker-save archive
    and an OCI image layout. Raises ImageNotFound."""
    import tarfile
    images = [(ref, store.get(ref)) for ref in refs]
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        ArchiveWriter(store, tf).write(images)


def load(store: ImageStore, fileobj: BinaryIO, progress: Callable[[str], None] | None = None) -> list[Image]:
    """`docker load`: the images of a docker-save archive or an OCI layout tar (gzip
    allowed), stored and tagged in `store`; `progress` gets Docker's "Loaded image" lines.
    Raises ImageError when it is no such archive."""
    import tarfile
    with _Seekable(fileobj) as f:
        try:
            with tarfile.open(fileobj=f, mode="r:*") as tf:
                return ArchiveReader(store, tf, progress).load()
        except tarfile.TarError as e:
            raise ImageError(f"load: not an image archive: {e}") from e


def pick_platform(index: dict, arch: str | None = None, os_name: str = "linux") -> dict:
    """The descriptor for this platform in an OCI index / Docker manifest list."""
    arch = arch or host_architecture()
    for desc in index.get("manifests", []):
        plat = desc.get("platform") or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return desc
    found = [f"{(d.get('platform') or {}).get('os')}/{(d.get('platform') or {}).get('architecture')}"
             for d in index.get("manifests", [])]
    raise ImageNotFound(f"no manifest for {os_name}/{arch} in the index (has: {', '.join(found)})")




class ArchiveWriter:
    """Writes docker-save (manifest.json) and OCI layout (index.json) entries for images."""

    def __init__(self, store: ImageStore, tf: tarfile.TarFile):
        self.store = store
        self.tf = tf
        self.written: set[str] = set()

    def write(self, images: list[tuple[str, Image]]) -> None:
        docker_manifest, oci_index = [], []
        by_id: dict[str, dict] = {}
        for ref, image in images:
            entry = by_id.get(image.id)
            if entry is None:
                entry = self._write_image(image)
                by_id[image.id] = entry
                docker_manifest.append(entry["docker"])
            tag = self._tag_for(ref, image)
            if tag and tag not in entry["docker"]["RepoTags"]:
                entry["docker"]["RepoTags"].append(tag)
            desc = dict(entry["descriptor"])
            if tag:
                desc["annotations"] = {REF_NAME: tag, CONTAINERD_NAME: tag}
            oci_index.append(desc)
        self._add_bytes("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        self._add_bytes("index.json", canonical_json(
            {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": oci_index}))
        self._add_bytes("manifest.json", canonical_json(docker_manifest))

    def _tag_for(self, ref: str, image: Image) -> str | None:
        try:
            key = normalize_ref(ref)
        except InvalidReference:
            return None
        return key if key in image.repo_tags else None

    def _write_image(self, image: Image) -> dict:
        config_bytes = self.store.raw_config_bytes(image.id)
        config_name = self._add_blob(config_bytes)
        layers = []
        for diff_id in image.diff_ids:
            layers.append({"mediaType": MT_OCI_LAYER, "digest": diff_id,
                           "size": self.store.layers.size(diff_id)})
            self._add_layer(diff_id)
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": image.id, "size": len(config_bytes)},
            "layers": layers})
        self._add_blob(manifest)
        return {"docker": {"Config": config_name, "RepoTags": [],
                           "Layers": [_blob_name(d) for d in image.diff_ids]},
                "descriptor": {"mediaType": MT_OCI_MANIFEST, "digest": sha256_bytes(manifest),
                               "size": len(manifest)}}

    def _add_blob(self, data: bytes) -> str:
        name = _blob_name(sha256_bytes(data))
        if name not in self.written:
            self._add_bytes(name, data)
            self.written.add(name)
        return name

    def _add_layer(self, diff_id: str) -> None:
        name = _blob_name(diff_id)
        if name in self.written:
            return
        self.written.add(name)
        path = self.store.layers.tar_path(diff_id)
        info = self.tf.tarinfo(name)
        info.size = os.stat(path).st_size
        info.mode = 0o644
        with open(path, "rb") as f:
            self.tf.addfile(info, f)

    def _add_bytes(self, name: str, data: bytes) -> None:
        self._add_dirs(name)
        info = self.tf.tarinfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.tf.addfile(info, io.BytesIO(data))

    def _add_dirs(self, name: str) -> None:
        import tarfile
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d + "/" not in self.written:
                info = self.tf.tarinfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                self.tf.addfile(info)
                self.written.add(d + "/")


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


class ArchiveReader:
    """Reads images out of a docker-save archive or an OCI image layout (random access tar)."""

    def __init__(self, store: ImageStore, tf: tarfile.TarFile, progress):
        self.store = store
        self.tf = tf
        self.progress = progress or (lambda line: None)
        self.members = {m.name.removeprefix("./"): m
                        for m in tf.getmembers()}

    def load(self) -> list[Image]:
        if "manifest.json" in self.members:
            return self._load_docker()
        if "index.json" in self.members:
            return self._load_oci()
        raise ImageError("load: archive has neither manifest.json (docker save) nor index.json "
                         "(OCI layout)")

    def _read(self, name: str) -> bytes:
        member = self.members.get(name)
        f = self.tf.extractfile(member) if member is not None else None
        if f is None:
            raise ImageError(f"load: archive is missing {name}")
        return f.read()

    def _load_docker(self) -> list[Image]:
        loaded = []
        for entry in jsonlite.loads(self._read("manifest.json")):
            config_bytes = self._read(entry["Config"])
            image = self._store(config_bytes, entry.get("Layers") or [])
            for tag in entry.get("RepoTags") or []:
                self.store.tag(image.id, tag)
                self.progress(f"Loaded image: {normalize_ref(tag)}")
            if not entry.get("RepoTags"):
                self.progress(f"Loaded image ID: {image.id}")
            loaded.append(self.store.get(image.id))
        return loaded

    def _load_oci(self) -> list[Image]:
        loaded = []
        for desc in jsonlite.loads(self._read("index.json")).get("manifests", []):
            manifest = self._manifest_for(desc)
            config_bytes = self._read(_blob_name(manifest["config"]["digest"]))
            image = self._store(config_bytes, [_blob_name(l["digest"]) for l in manifest["layers"]])
            tag = _oci_tag(desc.get("annotations") or {})
            if tag:
                self.store.tag(image.id, tag)
                self.progress(f"Loaded image: {normalize_ref(tag)}")
            else:
                self.progress(f"Loaded image ID: {image.id}")
            loaded.append(self.store.get(image.id))
        return loaded

    def _manifest_for(self, desc: dict) -> dict:
        doc = jsonlite.loads(self._read(_blob_name(desc["digest"])))
        if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            return self._manifest_for(pick_platform(doc))
        return doc

    def _store(self, config_bytes: bytes, layer_names: list[str]) -> Image:
        raw = jsonlite.loads(config_bytes)
        diff_ids = (raw.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layer_names):
            raise ImageError(f"load: config lists {len(diff_ids)} layers, manifest {len(layer_names)}")
        for diff_id, name in zip(diff_ids, layer_names):
            if self.store.layers.claim(diff_id):
                continue
            member = self.members.get(name)
            f = self.tf.extractfile(member) if member is not None else None
            if f is None:
                raise ImageError(f"load: archive is missing layer {name}")
            self.store.layers.import_stream(f, expected_diff_id=diff_id)
        return self.store.add_config(config_bytes)


def _oci_tag(annotations: dict) -> str | None:
    """The full reference an OCI index entry names; a bare tag like "latest" names none."""
    for key in (CONTAINERD_NAME, REF_NAME):
        name = annotations.get(key)
        if name and (":" in name or "/" in name):
            try:
                return normalize_ref(name)
            except InvalidReference:
                continue
    return None


class _Seekable:
    """``with _Seekable(f) as g``: g is f itself if seekable, else a temp-file copy of it
    (stdin, sockets), closed on exit."""

    def __init__(self, fileobj: BinaryIO):
        self.fileobj = fileobj
        self.spool = None

    def __enter__(self) -> BinaryIO:
        if _is_seekable(self.fileobj):
            return self.fileobj
        import shutil
        import tempfile
        self.spool = tempfile.TemporaryFile()
        try:
            shutil.copyfileobj(self.fileobj, self.spool, 1 << 20)
            self.spool.seek(0)
        except BaseException:
            self.spool.close()
            raise
        return self.spool

    def __exit__(self, *exc) -> None:
        if self.spool is not None:
            self.spool.close()


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        if fileobj.seekable():
            fileobj.tell()
            return True
    except (AttributeError, OSError):
        pass
    return False
