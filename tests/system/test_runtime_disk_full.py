"""The runtime's disk full (its root on a small tmpfs): pdocker says so in one line and exits
non-zero, no half-imported image and no half-made container is left, what was stored before
still works, and everything works again once space is freed."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from pkube.runtime.imagestore import ImageStore
from tests.system.conftest import teardown_root

TMPFS_SIZE = "24m"


@pytest.fixture
def full_root(runtime_assets, tmp_path, pdocker):
    """pdocker's root on a tmpfs holding busybox, with a filler file to free space later."""
    root = pdocker.root
    for entry in list(root.iterdir()):
        if entry.is_symlink():
            entry.unlink()            # the shared image store: this test needs its own, on the tmpfs
    saved = tmp_path / "saved"
    os.rename(root, saved)
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(root)], check=True)
    try:
        for entry in saved.iterdir():
            subprocess.run(["cp", "-a", str(entry), str(root)], check=True)
        ImageStore(root / "images").ensure_busybox()
        yield root
    finally:
        teardown_root(root, pdocker.parent)
        subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(root, keep_free: int) -> None:
    """Grow a filler file until only about ``keep_free`` bytes are left (0: until the disk
    refuses another byte)."""
    free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    with open(root / "filler", "ab", buffering=0) as out:
        out.write(b"\1" * max(0, free - keep_free))
        if keep_free == 0:
            try:
                while True:
                    out.write(b"\1" * 4096)
            except OSError:
                pass


def _tarball(path, size: int) -> None:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("big")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))


def _one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_full_disk_gets_one_line_and_leaves_nothing_half_made(full_root, pdocker, tmp_path):
    _tarball(tmp_path / "big.tar", 4 * 1024 * 1024)
    images_before = sorted(p.name for p in (full_root / "images").rglob("*"))
    _fill(full_root, keep_free=1024 * 1024)
    line = _one_line_error(pdocker("import", str(tmp_path / "big.tar"), "big", check=False))
    assert "no space left on device" in line.lower()
    assert sorted(p.name for p in (full_root / "images").rglob("*")) == images_before
    listed = pdocker("images").stdout
    assert "busybox" in listed and "big" not in listed

    _fill(full_root, keep_free=0)
    made = pdocker("run", "--network", "none", "--name", "starved", "busybox", "true", check=False)
    assert "no space left on device" in _one_line_error(made).lower()
    assert "starved" not in pdocker("ps", "-a").stdout
    (full_root / "filler").unlink()
    assert pdocker("run", "--rm", "--network", "none", "busybox", "echo", "back").stdout == "back\n"
    assert pdocker("import", str(tmp_path / "big.tar"), "big").returncode == 0
    assert "big" in pdocker("images").stdout
