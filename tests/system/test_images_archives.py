"""docker-save and OCI layout archives, checked against skopeo as an independent tool."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from pkube.runtime import archive as archives
from pkube.runtime.errors import ImageError
from pkube.runtime.imagestore import ImageStore

pytestmark = pytest.mark.root


def skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def test_saved_archive_is_read_by_skopeo_in_both_formats(store, tmp_path):
    image = store.ensure_busybox()
    archive = tmp_path / "busybox.tar"
    with open(archive, "wb") as f:
        archives.save(store, ["busybox"], f)
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path}/from-docker:bb")
    skopeo("copy", f"oci-archive:{archive}:busybox:latest", f"oci:{tmp_path}/from-oci:bb")
    for layout in ("from-docker", "from-oci"):
        index = json.loads((tmp_path / layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        blobs = tmp_path / layout / "blobs/sha256"
        manifest = json.loads((blobs / manifest_digest).read_text())
        config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
        assert config["rootfs"]["diff_ids"] == image.diff_ids  # skopeo read our layers intact
        assert config["config"] == image.config


def test_archives_written_by_skopeo_load_with_the_same_id(store, tmp_path):
    image = store.ensure_busybox()
    archive = tmp_path / "busybox.tar"
    with open(archive, "wb") as f:
        archives.save(store, ["busybox:latest"], f)
    skopeo("copy", f"docker-archive:{archive}", f"docker-archive:{tmp_path}/sk-docker.tar:mirror/bb:1")
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{tmp_path}/sk-oci.tar:mirror/bb:2")
    fresh = ImageStore(tmp_path / "fresh")
    with open(tmp_path / "sk-docker.tar", "rb") as f:
        [from_docker] = archives.load(fresh, f)
    with open(tmp_path / "sk-oci.tar", "rb") as f:
        [from_oci] = archives.load(fresh, f)
    assert from_docker.id == image.id  # docker-archive keeps the config bytes
    assert from_oci.diff_ids == image.diff_ids  # OCI conversion re-serialises the config
    assert from_oci.config == image.config
    assert fresh.get("mirror/bb:1").id == image.id
    assert fresh.get("mirror/bb:2").id == from_oci.id
    assert os.path.isfile(os.path.join(from_docker.layer_dirs[0], "bin/busybox"))


def test_save_load_round_trip_keeps_tags_and_shares_layers(store, tmp_path):
    base = store.ensure_busybox()
    store.new_image(base, {"Cmd": ["echo", "hi"]}, None, "CMD echo hi", "hello:1")
    archive = tmp_path / "both.tar"
    with open(archive, "wb") as f:
        archives.save(store, ["busybox", "hello:1"], f)
    with tarfile.open(archive) as tf:
        assert len([n for n in tf.getnames() if n == f"blobs/sha256/{base.diff_ids[0][7:]}"]) == 1
    fresh = ImageStore(tmp_path / "fresh")
    with open(archive, "rb") as f:
        loaded = archives.load(fresh, f)
    assert sorted(t for i in loaded for t in i.repo_tags) == ["busybox:latest", "hello:1"]
    assert fresh.get("hello:1").config["Cmd"] == ["echo", "hi"]
    assert len(fresh.layers.list()) == 1


def test_load_of_a_non_image_archive_is_a_clear_error(store, tmp_path):
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tf:
        tf.add(__file__, arcname="readme.txt")
    with open(junk, "rb") as f, pytest.raises(ImageError, match="neither manifest.json"):
        archives.load(store, f)
