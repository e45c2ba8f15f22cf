"""pdocker's image verbs, driven as a user would: images, tag, rmi, import, save, load,
history, build (+ run of the result), pull and push against a real loopback registry."""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.system.test_registry import registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pd(tmp_path):
    """pdocker on a private state root (image verbs only: no containers, no cgroups)."""
    root = tmp_path / "state"

    def run(*args, input=None, check=True):
        result = subprocess.run([sys.executable, "-m", "pkube.pdocker", "--root", str(root), *args],
                                input=input, capture_output=True, cwd=REPO, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"pdocker {' '.join(args)}: {result.stderr.decode()}")
        return result
    run.root = root
    return run


def out(result) -> str:
    return result.stdout.decode()


def test_tag_images_history_rmi(pd):
    pd("tag", "busybox", "mine/box:v1")
    listing = out(pd("images")).splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == ["mine/box", "v1"] for line in listing)
    assert len(set(out(pd("images", "-q")).split())) == 1
    assert "busybox from the host" in out(pd("history", "mine/box:v1"))
    assert out(pd("rmi", "mine/box:v1")) == "Untagged: mine/box:v1\n"
    bad = pd("rmi", "mine/box:v1", check=False)
    assert bad.returncode == 1 and b"No such image: mine/box:v1" in bad.stderr


def test_bad_input_is_one_clear_line(pd):
    for args, text in ((("tag", "busybox", "Bad Name"), "invalid reference format"),
                       (("import", "/nonexistent.tar"), "no such file"),
                       (("history", "ghost"), "No such image: ghost")):
        result = pd(*args, check=False)
        assert result.returncode != 0
        err = result.stderr.decode()
        assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malicious_import_is_refused_and_leaves_nothing(pd, tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        data = b"* * * * * root reboot\n"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    result = pd("import", str(evil), "evil:1", check=False)
    assert result.returncode == 125
    assert b"refused layer" in result.stderr and b"'..'" in result.stderr
    layers = pd.root / "images/layers"
    assert not layers.exists() or list(layers.iterdir()) == []
    assert b"evil" not in pd("images").stdout


def test_import_with_change_save_and_load(pd, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w:gz") as tf:
        data = b"imported\n"
        info = tarfile.TarInfo("data.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    image_id = out(pd("import", "-c", "CMD [\"/bin/cat\", \"/data.txt\"]", str(rootfs), "imp:1")).strip()
    assert image_id.startswith("sha256:")
    archive = tmp_path / "imp.tar"
    pd("save", "-o", str(archive), "imp:1")
    pd("rmi", "imp:1")
    assert out(pd("load", "-i", str(archive))) == "Loaded image: imp:1\n"
    loaded = pd("load", input=archive.read_bytes())
    assert out(loaded) == "Loaded image: imp:1\n"
    assert out(pd("images", "-q", "--no-trunc", "imp")).strip() == image_id


def test_build_then_run_the_image(pdocker, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "greeting").write_text("built by pdocker\n")
    (ctx / "Dockerfile").write_text('FROM busybox\nCOPY greeting /srv/\n'
                                    'RUN echo "made by RUN" >> /srv/greeting && rm /etc/group\n'
                                    'CMD ["cat", "/srv/greeting", "/etc/group"]\n')
    tag = f"built-{secrets.token_hex(3)}:1"
    try:
        first = pdocker("build", "-t", tag, str(ctx)).stdout
        assert "Step 4/4 : CMD" in first and f"Successfully tagged {tag}" in first
        result = pdocker("run", "--rm", "--network", "none", tag, check=False)
        assert result.stdout == "built by pdocker\nmade by RUN\n"
        assert "can't open '/etc/group'" in result.stderr and result.returncode == 1
        again = pdocker("build", "-t", tag, str(ctx)).stdout
        assert again.count("---> Using cache") == 3
    finally:
        pdocker("rmi", tag, check=False)


def test_push_and_pull_through_the_cli(pd, registry, tmp_path):  # noqa: F811
    ref = f"{registry}/cli/busybox:1"
    pd("tag", "busybox", ref)
    pushed = out(pd("push", ref))
    assert f"The push refers to repository [{registry}/cli/busybox]" in pushed
    assert ": Pushed" in pushed and "digest: sha256:" in pushed
    pd("rmi", ref)
    pd("rmi", "busybox")
    pulled = out(pd("pull", ref))
    assert "Pull complete" in pulled and pulled.strip().endswith(ref)
    assert ref.rsplit(":", 1)[0] in out(pd("images"))
