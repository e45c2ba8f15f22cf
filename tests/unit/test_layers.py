"""Layer unpacking: hostile tarballs are refused with a clear error and leave nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pkube.runtime.errors import LayerError, UnsafeLayer
from pkube.runtime.layers import LayerStore
from pkube.runtime.layertar import tar_directory
from pkube.runtime.layertree import lookup, resolve_path


def make_tar(entries, compress=None) -> bytes:
    """entries: (name, kind, extra) with kind file|dir|symlink|hardlink|chr; extra = data/target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra, *mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode[0] if mode else 0o644
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                data = extra.encode() if isinstance(extra, str) else extra
                info.size = len(data)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, (mode[0] if mode else 0o755)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress == "gzip" else raw


@pytest.fixture
def store(tmp_path):
    return LayerStore(tmp_path / "layers")


def assert_refused(store, data, *words):
    with pytest.raises(UnsafeLayer) as err:
        store.import_stream(io.BytesIO(data))
    message = str(err.value)
    for word in words:
        assert word in message
    leftovers = os.listdir(store.root) if os.path.exists(store.root) else []
    assert leftovers == [], f"a refused layer left {leftovers}"


def test_dotdot_escape_is_refused(store, tmp_path):
    data = make_tar([("ok", "file", "x"), ("../../escaped", "file", "evil")])
    assert_refused(store, data, "'..'", "../../escaped")
    assert not (tmp_path / "escaped").exists()


def test_absolute_path_is_refused(store):
    assert_refused(store, make_tar([("/etc/evil", "file", "x")]), "absolute", "/etc/evil")


def test_write_through_symlink_is_refused(store, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    data = make_tar([("link", "symlink", str(victim)), ("link/owned", "file", "evil")])
    assert_refused(store, data, "symlink", "link/owned")
    assert list(victim.iterdir()) == []


def test_relative_symlink_climbing_out_is_refused(store):
    data = make_tar([("a", "dir", None), ("a/up", "symlink", "../../etc")])
    assert_refused(store, data, "points outside", "a/up")


def test_hardlink_to_host_shadow_is_refused(store):
    assert_refused(store, make_tar([("shadow", "hardlink", "/etc/shadow")]), "hardlink", "/etc/shadow")
    assert_refused(store, make_tar([("shadow", "hardlink", "../../etc/shadow")]), "hardlink")


def test_hardlink_to_missing_file_is_refused(store):
    assert_refused(store, make_tar([("x", "hardlink", "etc/shadow")]), "does not name a file")


def test_device_node_is_refused(store):
    assert_refused(store, make_tar([("dev", "dir", None), ("dev/mem", "chr", None)]), "device node")


def test_corrupt_archive_is_an_error_and_leaves_nothing(store):
    data = make_tar([("big", "file", "x" * 5000)], compress="gzip")[:-200]
    with pytest.raises(LayerError, match="unreadable layer"):
        store.import_stream(io.BytesIO(data))
    assert os.listdir(store.root) == []


def test_good_layer_is_content_addressed_and_shared(store):
    plain = make_tar([("etc", "dir", None), ("etc/motd", "file", "hello\n"),
                      ("bin", "dir", None), ("bin/tool", "file", "#!", 0o4755),
                      ("bin/alias", "hardlink", "bin/tool"),
                      ("bin/abs", "symlink", "/bin/tool"), ("bin/rel", "symlink", "./tool")])
    diff_id = store.import_stream(io.BytesIO(plain))
    assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert store.import_stream(io.BytesIO(gzip.compress(plain))) == diff_id
    assert store.list() == [diff_id]
    assert isinstance(store.diff_dir(diff_id), str) and isinstance(store.root, str)
    root = Path(store.diff_dir(diff_id))
    assert (root / "etc/motd").read_text() == "hello\n"
    assert stat.S_IMODE(os.lstat(root / "bin/tool").st_mode) == 0o4755  # setuid kept
    assert os.lstat(root / "bin/alias").st_ino == os.lstat(root / "bin/tool").st_ino
    assert os.readlink(root / "bin/abs") == "/bin/tool"
    assert Path(store.tar_path(diff_id)).read_bytes() == plain
    assert int(os.lstat(root / "etc").st_mtime) == 1_700_000_000


def test_digest_mismatch_is_refused(store):
    with pytest.raises(LayerError, match="mismatch"):
        store.import_stream(io.BytesIO(make_tar([("a", "file", "x")])), "sha256:" + "0" * 64)
    assert os.listdir(store.root) == []


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd tool not installed")
def test_zstd_layer(store):
    plain = make_tar([("z", "file", "zstd!")])
    packed = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout
    diff_id = store.import_stream(io.BytesIO(packed))
    assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert Path(store.diff_dir(diff_id), "z").read_text() == "zstd!"


def test_directory_to_layer_round_trip(store, tmp_path):
    src = tmp_path / "src"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/f").write_text("data")
    os.symlink("b/f", src / "a/link")
    diff_id = store.import_directory(src)
    out = Path(store.diff_dir(diff_id))
    assert (out / "a/b/f").read_text() == "data"
    assert os.readlink(out / "a/link") == "b/f"
    again = io.BytesIO()
    tar_directory(src, again)
    assert "sha256:" + hashlib.sha256(again.getvalue()).hexdigest() == diff_id  # deterministic


def test_lookup_through_a_stack(store, tmp_path):
    low = store.diff_dir(store.import_stream(io.BytesIO(make_tar([("etc", "dir", None),
                                                                   ("etc/a", "file", "low")]))))
    high = store.diff_dir(store.import_stream(io.BytesIO(make_tar([("etc", "dir", None),
                                                                    ("etc/b", "file", "high")]))))
    assert lookup([low, high], "/etc/a") == os.path.join(low, "etc/a")
    assert lookup([low, high], "etc/b") == os.path.join(high, "etc/b")
    assert lookup([low, high], "/etc/c") is None


def test_sweep_removes_only_stale_temp_entries(store):
    stale, fresh = Path(store.root, ".tmp-old"), Path(store.root, ".tmp-new")
    for d in (stale, fresh):
        (d / "diff").mkdir(parents=True)
    os.utime(stale, (0, 0))
    diff_id = store.import_stream(io.BytesIO(make_tar([("a", "file", "x")])))
    store.sweep()
    assert not stale.exists() and fresh.exists() and store.exists(diff_id)


def test_resolve_path_follows_links_inside_the_stack(store):
    low = store.diff_dir(store.import_stream(io.BytesIO(make_tar([
        ("usr", "dir", None), ("usr/bin", "dir", None), ("bin", "symlink", "usr/bin"),
        ("etc", "dir", None), ("etc/alt", "symlink", "/bin")]))))
    assert resolve_path([low], "/bin/tool") == "/usr/bin/tool"
    assert resolve_path([low], "/etc/alt/x") == "/usr/bin/x"
    assert resolve_path([low], "/bin", follow_last=False) == "/bin"
    assert resolve_path([low], "/nothing/../bin/") == "/usr/bin"
