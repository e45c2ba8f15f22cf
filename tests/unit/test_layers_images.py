"""The image store: references, import, tag, rmi, and the offline busybox image."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pkube.runtime.errors import ImageConflict, ImageNotFound, InvalidReference
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.reference import normalize_ref, stored_ref_key
from tests.unit.test_layers import make_tar


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


@pytest.mark.parametrize("ref, expected", [
    ("busybox", "busybox:latest"),
    ("busybox:1.36", "busybox:1.36"),
    ("docker.io/library/alpine", "alpine:latest"),
    ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
    ("127.0.0.1:5000/app:v2", "127.0.0.1:5000/app:v2"),
])
def test_normalize_ref(ref, expected):
    assert normalize_ref(ref) == expected
    assert stored_ref_key(ref) == expected   # the lookup key, made without validating


@pytest.mark.parametrize("bad", ["", "UPPER", "a b", "app:", "app:bad/tag", "-x"])
def test_bad_refs_have_clear_errors(bad, store):
    with pytest.raises(InvalidReference, match="invalid reference format"):
        normalize_ref(bad)
    store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "app")
    with pytest.raises(ImageNotFound, match="No such image"):
        store.get(bad)   # never the stored app:latest, not even for "app:"


def test_busybox_is_offline_and_deterministic(store, tmp_path):
    image = store.ensure_busybox()
    assert image.repo_tags == ["busybox:latest"]
    assert all(isinstance(d, str) for d in image.layer_dirs) and isinstance(store.root, str)
    root = Path(image.layer_dirs[0])
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert "root:x:0:0" in (root / "etc/passwd").read_text()
    assert oct(os.stat(root / "tmp").st_mode & 0o7777) == "0o1777"
    assert image.config["Cmd"] == ["sh"]
    assert ImageStore(tmp_path / "other").ensure_busybox().id == image.id
    assert store.get("busybox").id == store.get(image.short_id).id == store.get(image.id).id


def test_import_with_changes_then_tag_and_rmi(store):
    data = make_tar([("hello", "file", "hi")])
    image = store.import_tar(io.BytesIO(data), "app:v1", changes=["CMD [\"/hello\"]", "ENV A=b"])
    assert image.config["Cmd"] == ["/hello"] and image.config["Env"] == ["A=b"]
    store.tag("app:v1", "app:v2")
    assert store.get("app:v2").repo_tags == ["app:v1", "app:v2"]
    assert store.remove("app:v1") == ["Untagged: app:v1"]
    with pytest.raises(ImageConflict, match="being used"):
        store.remove("app:v2", in_use={image.id})
    lines = store.remove("app:v2")
    assert lines[0] == "Untagged: app:v2" and f"Deleted: {image.id}" in lines
    with pytest.raises(ImageNotFound, match="No such image: app:v2"):
        store.get("app:v2")
    assert store.layers.list() == []


def test_rmi_by_id_with_several_tags_needs_force(store):
    image = store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "a")
    store.tag("a", "b")
    with pytest.raises(ImageConflict, match="multiple repositories"):
        store.remove(image.id)
    assert "Deleted: " + image.id in store.remove(image.short_id, force=True)


def test_layers_are_shared_between_images(store):
    base = store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "base")
    child = store.new_image(base, {"Cmd": ["x"]}, None, "CMD x", "child")
    assert child.layer_dirs == base.layer_dirs
    store.remove("base")
    assert os.path.isdir(store.get("child").layer_dirs[0])


def test_intermediate_images_are_hidden_from_list(store):
    base = store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "base")
    step = store.new_image(base, {"Env": ["X=1"]}, None, "ENV X=1", intermediate=True)
    assert [i.repo_tags for i in store.list()] == [["base:latest"]]
    assert {i.id for i in store.list(all=True)} == {base.id, step.id}


def _ensure_and_tag(root: str, tag: str) -> str:
    store = ImageStore(Path(root))
    image = store.ensure_busybox()
    store.tag("busybox", tag)
    return image.id


def test_concurrent_processes_share_one_store(tmp_path):
    import concurrent.futures
    import multiprocessing
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        ids = list(pool.map(_ensure_and_tag, [root] * 4, [f"t{i}" for i in range(4)]))
    store = ImageStore(tmp_path / "shared")
    assert len(set(ids)) == 1 and len(store.layers.list()) == 1
    assert store.get("busybox").repo_tags == ["busybox:latest", "t0:latest", "t1:latest",
                                               "t2:latest", "t3:latest"]
    assert [name for name in os.listdir(store.layers.root) if name.startswith(".")] == []


def test_rmi_of_a_built_image_deletes_its_private_cache_parents(store):
    base = store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "base")
    step1 = store.new_image(base, {"Env": ["A=1"]}, None, "ENV A=1", intermediate=True)
    layer = store.layers.import_stream(io.BytesIO(make_tar([("g", "file", "2")])))
    step2 = store.new_image(step1, {"Env": ["A=1"]}, layer, "COPY g /", intermediate=True)
    store.add_config(store.raw_config_bytes(step2.id), ref="app")
    store.build_cache_put("k1", step1.id)
    lines = store.remove("app")
    assert lines[:3] == ["Untagged: app:latest", f"Deleted: {step2.id}", f"Deleted: {step1.id}"]
    assert f"Deleted: {layer}" in lines and store.build_cache_get("k1") is None
    assert store.get("base").id == base.id and [i.id for i in store.list()] == [base.id]


def test_rmi_spares_a_fresh_orphan_layer_of_a_concurrent_pull(store):
    image = store.import_tar(io.BytesIO(make_tar([("f", "file", "1")])), "gone")
    in_flight = store.layers.import_stream(io.BytesIO(make_tar([("g", "file", "2")])))
    stale = store.layers.import_stream(io.BytesIO(make_tar([("h", "file", "3")])))
    os.utime(store.layers.tar_path(stale), (0, 0))
    lines = store.remove("gone")
    assert f"Deleted: {image.diff_ids[0]}" in lines and f"Deleted: {stale}" in lines
    assert store.layers.exists(in_flight)


LEAN_GET = """
import sys
sys.path[:0] = [sys.argv[1]]
before = set(sys.modules)
from pkube.runtime.imagestore import ImageStore
image = ImageStore(sys.argv[2]).get(sys.argv[3])
heavy = {"re", "json", "pathlib", "enum", "contextlib", "collections", "functools", "typing"}
print(image.layer_dirs[0], *sorted(heavy & (set(sys.modules) - before)))
"""


@pytest.mark.parametrize("ref", ["busybox", "docker.io/library/busybox:latest"])
def test_getting_a_stored_image_imports_nothing_heavy(store, ref):
    """`pdocker run` looks its image up on every start: that costs no `re`, `json`, ..."""
    image = store.ensure_busybox()
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-I", "-S", "-c", LEAN_GET, repo, store.root, ref],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [image.layer_dirs[0]]
