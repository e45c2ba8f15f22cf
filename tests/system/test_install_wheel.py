"""pkube installed from a built wheel, on a machine without a C compiler: the wheel ships the
runtime's shim and pause compiled (setup.py), and a binary built from another version of
their source is refused with one line, or rebuilt when a compiler is there (pkube/runtime/helpers.py)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pkube.runtime.network import BridgeNetwork
from tests.system.conftest import teardown_root

REPO = Path(__file__).resolve().parents[2]
# compilers by name, with or without a target triplet or version: x86_64-linux-gnu-gcc-12, cc, c99
COMPILER = re.compile(r"^(.*-)?(cc|gcc|clang|c89|c99|tcc|g\+\+|c\+\+|clang\+\+)(-[0-9.]+)?$")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from a copy of the working tree (nothing written here)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "pkube", src / "pkube", ignore=shutil.ignore_patterns("__pycache__", "bin"))
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("pkube-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (without its dependencies: pdocker's run path
    needs only the standard library, and the test reaches no index)."""
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"), "install",
                    "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    return path


@pytest.fixture
def no_compiler_path(tmp_path) -> str:
    """A PATH with every program of ours but the C compilers (as links in one directory)."""
    bin_dir = tmp_path / "path"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(":"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if not COMPILER.match(name) and os.access(target, os.X_OK) and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(target)
    assert shutil.which("cc", path=str(bin_dir)) is None and shutil.which("gcc", path=str(bin_dir)) is None
    return str(bin_dir)


@pytest.fixture
def pdocker_of(venv, tmp_path):
    """Run the installed pdocker on its own root, bridge and nft table: run(*args, path=PATH)."""
    root = tmp_path / "root"
    tag = secrets.token_hex(3)
    parent = f"pkube-test-{tag}"
    options = ["--root", str(root), "--cgroup-parent", parent, "--bridge", f"pkw{tag}",
               "--subnet", f"10.202.{secrets.randbelow(250) + 1}.0/24", "--nft-table", f"pkw_{tag}"]

    def run(*args, path: str):
        env = {"PATH": path, "HOME": os.environ.get("HOME", "/root")}
        return subprocess.run([str(venv / "bin" / "pdocker"), *options, *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)
    try:
        yield run
    finally:
        teardown_root(root, parent)
        BridgeNetwork(root / "network", bridge=options[5], subnet=options[7], nft_table=options[9]).teardown()


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def installed_helpers(venv: Path) -> Path:
    return site_packages(venv) / "pkube" / "runtime" / "bin"


def test_the_wheel_installs_one_name_and_its_templates(venv):
    # Nothing but pkube and its metadata at site-packages' top: no `api`, `runtime`, `client`...
    top = {p.name for p in site_packages(venv).iterdir() if not p.name.startswith("_")}
    assert {name for name in top if not name.endswith((".dist-info", ".pth"))} == {"pkube"}, top
    # pkube up finds its static pod templates in an install
    templates = site_packages(venv) / "pkube" / "cluster" / "templates"
    assert {p.name for p in templates.iterdir()} >= {"etcd.yaml", "kube-apiserver.yaml", "audit-policy.yaml"}


def test_the_wheel_runs_a_container_without_a_compiler(venv, pdocker_of, no_compiler_path, tmp_path):
    assert sorted(p.name.split("-")[0] for p in installed_helpers(venv).iterdir()) == ["pause", "shim"]
    result = pdocker_of("run", "--rm", "busybox", "true", path=no_compiler_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "root" / "bin").exists()   # the shipped shim ran: nothing was compiled


def test_a_stale_helper_is_refused_without_a_compiler_and_rebuilt_with_one(venv, pdocker_of, no_compiler_path,
                                                                           tmp_path):
    helpers = installed_helpers(venv)
    shim = next(helpers.glob("shim-*"))
    stale = helpers / "shim-0123456789abcdef"   # as if built from another version of shim.c
    shim.rename(stale)
    try:
        refused = pdocker_of("run", "--rm", "busybox", "true", path=no_compiler_path)
        assert refused.returncode == 125
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "shim-0123456789abcdef, built from another version of shim.c" in refused.stderr
        assert "no C compiler" in refused.stderr
        rebuilt = pdocker_of("run", "--rm", "busybox", "true", path=os.environ["PATH"])
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert [p.name for p in (tmp_path / "root" / "bin").glob("shim-*")] == [shim.name]
    finally:
        stale.rename(shim)
