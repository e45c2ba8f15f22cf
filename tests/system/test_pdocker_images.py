"""pdocker's image verbs where Docker's output or errors are exact: push's final line carries
the manifest's size, and a host without a static busybox gets one line, not a traceback."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pkube.runtime import busybox
from pkube.pdocker.cli import main
from pkube.runtime.registry import MANIFEST_ACCEPT
from tests.system.test_registry import registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def pdocker(root: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pkube.pdocker", "--root", str(root), *args],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, f"pdocker {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_push_ends_with_the_manifest_digest_and_size(registry, tmp_path):  # noqa: F811
    ref = f"{registry}/sizes/busybox:v1"
    pdocker(tmp_path, "tag", "busybox", ref)
    last = pdocker(tmp_path, "push", ref).splitlines()[-1]
    match = re.fullmatch(r"v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", last)
    assert match, last
    manifest = httpx.get(f"http://{registry}/v2/sizes/busybox/manifests/v1",
                         headers={"Accept": MANIFEST_ACCEPT}).content
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == match[1]
    assert int(match[2]) == len(manifest)


@pytest.mark.parametrize("args", [("tag", "busybox", "mine:1"),
                                  ("run", "--rm", "busybox", "echo", "hi")])
def test_no_static_busybox_is_one_line_naming_the_package(tmp_path, monkeypatch, capsys, args):
    missing = tmp_path / "no-busybox"
    monkeypatch.setattr(busybox, "HOST_BUSYBOX", missing)
    status = main(["--root", str(tmp_path / "state"), *args])
    captured = capsys.readouterr()
    assert status != 0 and captured.out == ""
    assert captured.err == (f"pdocker: error: cannot make the busybox image: {missing} not "
                            "found: install busybox-static\n")
