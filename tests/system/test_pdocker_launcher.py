"""pdocker through its launcher (pkube/pdocker/launcher.py), the script `make setup` installs as
.venv/bin/pdocker: a bare interpreter (-I -S) that behaves like `python -m pkube.pdocker`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pkube.pdocker.launcher import install, is_launcher
from tests.system.conftest import REPO

pytestmark = pytest.mark.root


@pytest.fixture
def launcher_script(tmp_path):
    """A launcher installed in the test's temp dir."""
    script = tmp_path / "pdocker"
    subprocess.run([sys.executable, "-m", "pkube.pdocker.launcher", str(script)], check=True, cwd=REPO)
    return script


@pytest.fixture
def launcher(rt_root, tmp_path, launcher_script):
    """Run pdocker through a launcher installed in the test's temp dir."""
    root, parent = rt_root
    script = launcher_script

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
    assert is_launcher(str(target)) and sys.executable in target.read_text()
    assert os.access(target, os.X_OK)
    assert [p.name for p in tmp_path.iterdir()] == ["pdocker"]


def test_only_starting_verbs_pay_the_cgroup_grace_period_ahead(launcher_script, rt_root):
    """The script's background subshell rewrites itself into its own v1 cgroup for run (not
    for ps), and the move changes nothing: the caller's cgroups are as before."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("a v2-only host: containers are created in their cgroup, the script moves nothing")
    root, parent = rt_root
    before = open("/proc/self/cgroup").read()

    def traced(*args):
        return subprocess.run(["sh", "-x", str(launcher_script), "--root", str(root), "--cgroup-parent", parent,
                               *args], capture_output=True, text=True, timeout=60)
    run = traced("run", "--rm", "--network", "none", "busybox", "true")
    assert run.returncode == 0
    trace = run.stderr.replace("'", "").splitlines()   # bash quotes `[` and `]` in its trace, dash does not
    # the subshell is started only after a writable cgroup.procs was found; then the loop ends
    chosen = [trace[i][len("+ [ -w "):-2] for i in range(len(trace) - 1)
              if trace[i].startswith("+ [ -w ") and trace[i + 1] == "+ break"]
    assert len(chosen) == 1 and chosen[0].endswith("/cgroup.procs") and os.path.exists(chosen[0])
    ps = traced("ps", "-a", "-q")
    assert ps.returncode == 0 and ps.stdout == "" and "cgroup.procs" not in ps.stderr
    assert open("/proc/self/cgroup").read() == before


# what `pdocker run` must not import: each costs milliseconds of a run that has ~30 in all
# (docs/runtime.md, "Where a pdocker run spends its time")
HEAVY = {"pathlib", "re", "enum", "json", "argparse", "contextlib", "collections", "functools",
         "signal", "struct", "socket", "selectors", "typing", "dataclasses", "shutil", "tempfile",
         "subprocess", "threading", "datetime", "gettext", "locale", "urllib", "ipaddress",
         "fnmatch", "tarfile", "hashlib", "uuid", "platform", "ctypes", "weakref", "copy"}


def test_a_run_imports_no_heavy_standard_module(rt_root):
    root, parent = rt_root
    code = ("import sys; sys.path[:0] = [sys.argv.pop(1)]; from pkube.pdocker.cli import main; "
            "code = main(); print(' '.join(sorted(sys.modules))); sys.exit(code)")
    argv = ["--root", str(root), "--cgroup-parent", parent, "run", "--rm", "--network", "none", "busybox", "true"]
    subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO), *argv], check=True, timeout=60)  # image made
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO), *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    assert "pkube.runtime.runtime" in imported and not {m.split(".")[0] for m in imported} & HEAVY
