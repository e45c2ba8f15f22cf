"""OCI whiteouts <-> overlay whiteouts, proved on a real overlayfs mount."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from pkube.runtime.imagestore import ImageStore
from pkube.runtime.layertree import OPAQUE_XATTR
from tests.unit.test_layers import make_tar

pytestmark = pytest.mark.root


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


@contextmanager
def overlay(lower_dirs: list[Path], work: Path):
    """Mount lower_dirs (lowest first) + a fresh upper; yields (merged, upper); always unmounts."""
    upper, workdir, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, workdir, merged):
        d.mkdir(parents=True)
    lower = ":".join(str(d) for d in reversed(lower_dirs))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={workdir}", str(merged)], check=True)
    try:
        yield merged, upper
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_oci_whiteouts_become_overlay_whiteouts(store, tmp_path):
    base = store.import_tar(io.BytesIO(make_tar([
        ("etc", "dir", None), ("etc/keep", "file", "k"), ("etc/gone", "file", "g"),
        ("cache", "dir", None), ("cache/old", "file", "o")])), "base")
    diff_id = store.layers.import_stream(io.BytesIO(make_tar([
        ("etc", "dir", None), ("etc/.wh.gone", "file", ""),
        ("cache", "dir", None), ("cache/.wh..wh..opq", "file", ""), ("cache/new", "file", "n")])))
    top = Path(store.layers.diff_dir(diff_id))
    st = os.lstat(top / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "cache", OPAQUE_XATTR) == b"y"
    assert not (top / "etc/.wh.gone").exists()
    with overlay(base.layer_dirs + [top], tmp_path / "mnt") as (merged, _):
        assert sorted(os.listdir(merged / "etc")) == ["keep"]
        assert sorted(os.listdir(merged / "cache")) == ["new"]


def test_commit_turns_deletions_into_oci_whiteouts_and_the_file_stays_gone(store, tmp_path):
    base = store.ensure_busybox()
    with overlay(base.layer_dirs, tmp_path / "ctr") as (merged, upper):
        (merged / "etc/passwd").unlink()
        (merged / "etc/motd").write_text("committed\n")
        os.mkdir(merged / "var/spool/fresh")
        assert sorted(store.diff(upper, base)) == [
            ("A", "/etc/motd"), ("A", "/var/spool/fresh"), ("C", "/etc"),
            ("C", "/var"), ("C", "/var/spool"), ("D", "/etc/passwd")]
        image = store.commit(upper, base, base.config, "committed:1", comment="test")
    with tarfile.open(store.layers.tar_path(image.diff_ids[-1])) as tf:
        names = tf.getnames()
    assert "etc/.wh.passwd" in names and "etc/motd" in names and "etc/passwd" not in names
    assert image.history[-1]["comment"] == "test"
    with overlay(image.layer_dirs, tmp_path / "run") as (merged, _):
        assert not (merged / "etc/passwd").exists()
        assert (merged / "etc/motd").read_text() == "committed\n"
        assert (merged / "bin/busybox").is_file()


def test_opaque_directory_round_trips_through_commit(store, tmp_path):
    base = store.import_tar(io.BytesIO(make_tar([("d", "dir", None), ("d/a", "file", "a")])), "b")
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    os.setxattr(upper / "d", OPAQUE_XATTR, b"y")
    (upper / "d/b").write_text("b")
    image = store.commit(upper, base, {}, "opaque:1")
    with tarfile.open(store.layers.tar_path(image.diff_ids[-1])) as tf:
        assert "d/.wh..wh..opq" in tf.getnames()
    with overlay(image.layer_dirs, tmp_path / "mnt") as (merged, _):
        assert os.listdir(merged / "d") == ["b"]
