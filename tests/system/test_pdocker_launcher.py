"""pdocker through its launcher (runtime/launcher.py), the script `make setup` installs as
.venv/bin/pdocker: a bare interpreter (-I -S) that behaves like `python -m runtime`."""

from __future__ import annotations

import os
import subprocess
import time
import sys

import pytest

from runtime.launcher import install
from tests.system.conftest import REPO

pytestmark = pytest.mark.root


@pytest.fixture
def launcher(rt_root, tmp_path):
    """Run pdocker through a launcher installed in the test's temp dir."""
    root, parent = rt_root
    script = tmp_path / "pdocker"
    subprocess.run([sys.executable, "-m", "runtime.launcher", str(script)], check=True, cwd=REPO)

    def run(*args, env=None):
        return subprocess.run([str(script), "--root", str(root), "--cgroup-parent", parent, *args],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, **(env or {})}, cwd=tmp_path)
    return run


def test_run_rm_through_the_launcher_keeps_streams_and_exit_code(launcher):
    # PYTHONPATH and PYTHONSTARTUP would break or slow a normal interpreter: -I ignores them
    result = launcher("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                      env={"PYTHONPATH": "/nonexistent", "PYTHONSTARTUP": "/nonexistent"})
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert launcher("ps", "-a", "-q").stdout == ""


def test_help_and_errors_through_the_launcher(launcher):
    assert launcher("--help").returncode == 0 and "usage: pdocker" in launcher("--help").stdout
    bad = launcher("frobnicate")
    assert bad.returncode == 125 and bad.stderr.startswith("pdocker: error: ") and bad.stderr.count("\n") == 1
    assert launcher("version").stdout.startswith("Client: pdocker")


def test_install_replaces_the_script_in_place(tmp_path):
    target = tmp_path / "pdocker"
    target.write_text("#!/bin/sh\necho pip's console script\n")
    install(str(target))
    assert target.read_text().startswith(f"#!{sys.executable} -IS\n") and os.access(target, os.X_OK)
    assert [p.name for p in tmp_path.iterdir()] == ["pdocker"]


def test_keeping_cgroup_moves_fast_moves_nothing():
    from runtime.migrations import keep_migrations_fast, own_v1_procs_file
    if own_v1_procs_file() is None:
        pytest.skip("no cgroup v1 hierarchy on this host: container starts move nothing here")
    before = open("/proc/self/cgroup").read()
    assert keep_migrations_fast(0.05) is True
    time.sleep(0.15)
    assert open("/proc/self/cgroup").read() == before
