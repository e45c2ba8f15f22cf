"""Fixtures of the runtime's system tests: a runtime on a temp root with its own cgroup
parent, torn down so that no process, mount, cgroup, bridge or nft table survives a test.

The C helpers and the busybox image are built once per session and shared (read-only
layers), so each test pays only for its own containers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkube.runtime import process
from pkube.runtime.cgroups import CgroupManager
from pkube.runtime.imagestore import ImageStore
from pkube.runtime.network import BridgeNetwork
from pkube.runtime.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
# pdocker runs as installed, from cached bytecode (each call would otherwise recompile
# every module it imports when PYTHONDONTWRITEBYTECODE is set).
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@pytest.fixture(scope="session")
def runtime_assets(tmp_path_factory):
    """A directory with images/ (busybox) and, when the checkout has no helpers built by `make
    setup` (pkube/runtime/bin/), bin/ with the shim and pause built for the session."""
    if os.geteuid() != 0:
        pytest.fail("runtime system tests need root (namespaces, mounts, cgroups)")
    base = tmp_path_factory.mktemp("rtassets")
    process.binaries(base / "bin")
    ImageStore(base / "images").ensure_busybox()
    return base


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions `text` (our shims and pause processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def teardown_root(root: Path, cgroup_parent: str) -> list[str]:
    """Kill what runs from `root`, destroy the cgroup parent, check mounts; returns the
    problems found (leftover mounts), after cleaning them up anyway."""
    for pid in processes_mentioning(str(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    CgroupManager.detect().open(cgroup_parent).destroy()
    deadline = time.monotonic() + 5
    while processes_mentioning(str(root)) and time.monotonic() < deadline:
        time.sleep(0.02)
    leftovers = mounts_under(root)
    for mount in reversed(leftovers):
        subprocess.run(["umount", "-l", mount], check=False)
    return leftovers


@pytest.fixture
def rt_root(runtime_assets, tmp_path):
    """(root, cgroup parent) for a test's runtime; everything is cleaned afterwards and the
    test fails when a mount was left behind under the root."""
    root = tmp_path / "root"
    root.mkdir()
    if (runtime_assets / "bin").exists():   # helpers built for the session, not installed
        shutil.copytree(runtime_assets / "bin", root / "bin")
    (root / "images").symlink_to(runtime_assets / "images")
    parent = f"pkube-test-{secrets.token_hex(4)}"
    try:
        yield root, parent
    finally:
        leftovers = teardown_root(root, parent)
        assert not leftovers, f"mounts left behind: {leftovers}"


@pytest.fixture
def rt(rt_root):
    """A Runtime on a temp root (no bridge: tests that need one use `bridge_rt`)."""
    root, parent = rt_root
    return Runtime(root, cgroup_parent=parent)


def make_bridge(root: Path) -> BridgeNetwork:
    tag = secrets.token_hex(3)
    return BridgeNetwork(root / "network", bridge=f"pkt{tag}",
                         subnet=f"10.201.{secrets.randbelow(250) + 1}.0/24", nft_table=f"pkt_{tag}")


@pytest.fixture
def bridge_rt(rt_root):
    """A Runtime with its own bridge, subnet and nft table, torn down afterwards."""
    root, parent = rt_root
    net = make_bridge(root)
    try:
        yield Runtime(root, cgroup_parent=parent, network=net)
    finally:
        teardown_root(root, parent)
        net.teardown()


@pytest.fixture
def pdocker(rt_root):
    """Run the pdocker CLI on the test's root: pdocker(*args, input=None, check=True)."""
    root, parent = rt_root

    def run(*args, input=None, check=True, timeout=60, extra=()):
        cmd = [sys.executable, "-m", "pkube.pdocker", "--root", str(root), "--cgroup-parent", parent,
               *extra, *args]
        result = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=REPO,
                                text=isinstance(input, str) or input is None, env=CLI_ENV)
        if check and result.returncode != 0:
            raise AssertionError(f"pdocker {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result
    run.root = root
    run.parent = parent
    run.cmd = [sys.executable, "-m", "pkube.pdocker", "--root", str(root), "--cgroup-parent", parent]
    return run
