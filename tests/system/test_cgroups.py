"""cgroups on the real kernel: limits that a process actually runs into, and usage read back."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkube.runtime.cgroups import CgroupError, CgroupManager, Resources

pytestmark = pytest.mark.root


@pytest.fixture
def manager():
    if os.geteuid() != 0:
        pytest.fail("cgroup system tests need root")
    return CgroupManager.detect()


@pytest.fixture
def parent(manager):
    """A unique parent cgroup ("pkt-<rand>"), destroyed with everything below it."""
    path = f"pkt-{secrets.token_hex(4)}"
    cgroup = manager.create(path)
    try:
        yield path
    finally:
        cgroup.destroy()
        assert not cgroup.exists()


def start_gated(argv):
    """Start argv behind `read`, so it can join a cgroup before it runs; returns (proc, go)."""
    proc = subprocess.Popen(["sh", "-c", 'read _; exec "$@"', "sh", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def go():
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    return proc, go


def test_memory_limit_oom_kills_and_is_reported(manager, parent):
    cg = manager.create(f"{parent}/hog", Resources(memory_bytes=32 << 20))
    hog = "b = bytearray(256 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"
    proc, go = start_gated([sys.executable, "-c", hog])
    try:
        cg.add_process(proc.pid)
        assert not cg.oom_killed()
        go()
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert cg.oom_killed()
        assert cg.stats().memory_limit_bytes == 32 << 20
    finally:
        proc.kill()
        proc.wait()


def test_pids_limit_stops_forks(manager, parent):
    cg = manager.create(f"{parent}/forker", Resources(pids_limit=4))
    proc, go = start_gated(["/bin/busybox", "sh", "-c",
                            "for i in 1 2 3 4 5 6 7 8; do /bin/busybox sleep 300 >/dev/null 2>&1 & done"])
    try:
        cg.add_process(proc.pid)
        go()
        proc.wait(timeout=30)
        err = proc.stderr.read()
        assert b"can't fork" in err.lower()
        assert len(cg.pids()) == cg.stats().pids_current == 3  # 8 asked, 4 allowed, the shell left
    finally:
        cg.destroy()
        proc.kill()
        proc.wait()
    assert not cg.exists()


def test_cpu_limits_are_written_and_usage_is_counted(manager, parent):
    cg = manager.create(f"{parent}/cpu", Resources(cpu_quota_us=20000, cpu_shares=256))
    if cg.version == 1:
        assert (Path(cg.dir("cpu")) / "cpu.cfs_quota_us").read_text().strip() == "20000"
        assert (Path(cg.dir("cpu")) / "cpu.shares").read_text().strip() == "256"
    else:
        assert (Path(cg.dir) / "cpu.max").read_text().split() == ["20000", "100000"]
    proc, go = start_gated([sys.executable, "-c", "sum(range(3_000_000))"])
    cg.add_process(proc.pid)
    go()
    assert proc.wait(timeout=60) == 0
    assert cg.stats().cpu_usage_ns > 0


def test_destroy_kills_leftovers_in_nested_cgroups(manager, parent):
    pod = manager.create(f"{parent}/pod")
    child = manager.create(f"{parent}/pod/ctr", Resources(memory_bytes=64 << 20))
    proc = subprocess.Popen(["/bin/busybox", "sleep", "300"])
    try:
        child.add_process(proc.pid)
        assert pod.pids() == [proc.pid]
        stats = child.stats()
        assert 0 <= stats.memory_working_set_bytes <= stats.memory_usage_bytes
        pod.destroy()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert not pod.exists() and not child.exists()
        pod.destroy()  # idempotent
    finally:
        proc.kill()
        proc.wait()


def test_open_readopts_an_existing_cgroup(manager, parent):
    manager.create(f"{parent}/c", Resources(pids_limit=9))
    proc = subprocess.Popen(["/bin/busybox", "sleep", "300"])
    try:
        manager.open(f"{parent}/c").add_process(proc.pid)
        again = CgroupManager.detect().open(f"{parent}/c")
        assert again.pids() == [proc.pid]
        assert again.stats().pids_current == 1
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def unified():
    """The v2 code on the real kernel: this hybrid host's cgroup2 mount (no controllers), or
    the v2 root itself on a v2-only host. Yields (manager, parent path)."""
    root = Path("/sys/fs/cgroup/unified")
    if not (root / "cgroup.controllers").exists():
        root = Path("/sys/fs/cgroup")
    manager = CgroupManager.detect(root)
    assert manager.version == 2, f"no cgroup2 mount at {root}"
    path = f"pkt-{secrets.token_hex(4)}"
    parent = manager.create(path)
    try:
        yield manager, path
    finally:
        parent.destroy()
        assert not parent.exists()


def test_v2_processes_freeze_and_die_with_their_cgroup(unified):
    manager, parent = unified
    cg = manager.create(f"{parent}/pod/ctr")
    proc = subprocess.Popen(["/bin/busybox", "sleep", "300"])
    try:
        cg.add_process(proc.pid)
        assert manager.open(f"{parent}/pod").pids() == [proc.pid]
        cg.freeze()
        assert "frozen 1" in _wait_for(lambda: (Path(cg.dir) / "cgroup.events").read_text(), "frozen 1")
        cg.thaw()
        manager.open(f"{parent}/pod").destroy()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert not cg.exists()
    finally:
        proc.kill()
        proc.wait()


def test_v2_limit_without_a_controller_is_a_clear_error(unified):
    manager, parent = unified
    available = (Path(manager.root) / "cgroup.controllers").read_text().split()
    if "memory" in available:
        cg = manager.create(f"{parent}/m", Resources(memory_bytes=64 << 20))
        assert (Path(cg.dir) / "memory.max").read_text().strip() == str(64 << 20)
    else:
        with pytest.raises(CgroupError, match="memory.max: controller not enabled"):
            manager.create(f"{parent}/m", Resources(memory_bytes=64 << 20))
        assert not manager.open(f"{parent}/m").exists()


def _wait_for(read, text, attempts=200):
    for _ in range(attempts):
        value = read()
        if text in value:
            return value
        time.sleep(0.01)
    return value


def test_limits_can_be_raised_lowered_and_lifted(manager, parent):
    cg = manager.create(f"{parent}/resize", Resources(memory_bytes=32 << 20, pids_limit=10))
    cg.set(Resources(memory_bytes=64 << 20, pids_limit=10))  # raising: memsw must move first on v1
    assert cg.stats().memory_limit_bytes == 64 << 20
    cg.set(Resources(memory_bytes=16 << 20))
    assert cg.stats().memory_limit_bytes == 16 << 20
    cg.set(None)
    assert cg.stats().memory_limit_bytes is None
