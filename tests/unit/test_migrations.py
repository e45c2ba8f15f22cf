"""runtime.migrations picks the v1 cgroup the process is in, and nothing on a v2-only host;
runtime.launcher finds the verb that decides whether to use it."""

import os
import time

import pytest

from runtime.launcher import verb_of
from runtime.migrations import keep_migrations_fast, own_v1_procs_file

HYBRID = """9:name=systemd:/
8:pids:/user.slice
4:memory:/process_api/abc
1:cpu,cpuacct:/
0::/
"""


def fake_mount(tmp_path, dirs):
    for d in dirs:
        os.makedirs(tmp_path / "mnt" / d, exist_ok=True)
        (tmp_path / "mnt" / d / "cgroup.procs").write_text("")
    proc = tmp_path / "cgroup"
    proc.write_text(HYBRID)
    return str(proc), str(tmp_path / "mnt")


def test_the_first_mounted_v1_hierarchy_holding_the_process_is_chosen(tmp_path):
    proc, mount = fake_mount(tmp_path, ["pids/user.slice", "memory/process_api/abc"])
    assert own_v1_procs_file(proc, mount) == os.path.join(mount, "pids/user.slice/cgroup.procs")


def test_named_hierarchies_count_and_co_mounted_ones_are_skipped(tmp_path):
    proc, mount = fake_mount(tmp_path, ["systemd", "cpu,cpuacct"])
    assert own_v1_procs_file(proc, mount) == os.path.join(mount, "systemd/cgroup.procs")
    proc, mount = fake_mount(tmp_path / "b", ["cpu,cpuacct"])
    assert own_v1_procs_file(proc, mount) is None


def test_a_v2_only_host_needs_nothing(tmp_path):
    proc, mount = fake_mount(tmp_path, ["systemd", "pids/user.slice"])
    (tmp_path / "mnt" / "cgroup.controllers").write_text("cpu memory pids\n")
    assert own_v1_procs_file(proc, mount) is None


def test_an_unwritable_file_starts_nothing(tmp_path):
    assert keep_migrations_fast(procs_file=str(tmp_path / "missing" / "cgroup.procs")) is False


def test_the_rewrites_go_to_the_given_file_and_stop_at_the_deadline(tmp_path):
    target = tmp_path / "cgroup.procs"
    target.write_text("")
    assert keep_migrations_fast(0.05, procs_file=str(target)) is True
    time.sleep(0.2)
    written = target.read_text()
    assert written and set(written) == {"0"}
    time.sleep(0.05)
    assert target.read_text() == written   # stopped


@pytest.mark.parametrize("argv, verb", [
    (["run", "--rm", "busybox"], "run"),
    (["--root", "/tmp/x", "--cgroup-parent", "p", "exec", "c", "ls"], "exec"),
    (["--root=/tmp/x", "start", "c"], "start"),
    (["-h"], None), (["--help", "run"], "run"), ([], None),
    (["--root", "run", "ps"], "ps"),   # a directory named "run" is an option's value
])
def test_verb_of(argv, verb):
    assert verb_of(argv) == verb

