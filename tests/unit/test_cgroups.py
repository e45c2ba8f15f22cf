"""cgroups logic against temporary directories laid out like v1 (hybrid) and v2 hosts."""

from __future__ import annotations

import pytest

from pkube.runtime.cgroups import (
    CgroupError,
    CgroupManager,
    CgroupV1Manager,
    CgroupV2Manager,
    Resources,
    shares_to_weight,
)

V2_FILES = ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.freeze",
            "memory.max", "memory.swap.max", "memory.current", "memory.events",
            "cpu.max", "cpu.weight", "cpu.stat", "pids.max", "pids.current")


def make_v1_root(root):
    """A hybrid host: v1 controllers, plus a cgroup2 mount at unified/ with no controllers."""
    for controller in ("cpu", "cpuacct", "memory", "pids", "freezer"):
        (root / controller).mkdir()
        (root / controller / "cgroup.procs").write_text("")
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("")
    return root


def make_v2_dir(directory, controllers="cpu memory pids"):
    """What the kernel makes when a v2 cgroup directory is created."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in V2_FILES:
        (directory / name).write_text("")
    (directory / "cgroup.controllers").write_text(controllers)
    return directory


def test_detect_picks_v1_on_a_hybrid_layout(tmp_path):
    manager = CgroupManager.detect(make_v1_root(tmp_path))
    assert isinstance(manager, CgroupV1Manager)
    assert manager.controllers == ["cpu", "cpuacct", "memory", "pids", "freezer"]


def test_detect_picks_v2_on_a_cgroup2_root(tmp_path):
    assert isinstance(CgroupManager.detect(make_v2_dir(tmp_path)), CgroupV2Manager)


def test_detect_refuses_an_empty_directory(tmp_path):
    with pytest.raises(CgroupError, match="neither"):
        CgroupManager.detect(tmp_path)


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "./a", "a/./b"])
def test_bad_paths_are_refused(tmp_path, path):
    with pytest.raises(ValueError):
        CgroupManager.detect(make_v1_root(tmp_path)).open(path)


def test_v1_limits_land_in_each_controller(tmp_path):
    root = make_v1_root(tmp_path)
    (root / "memory" / "memory.memsw.limit_in_bytes").write_text("")  # swap accounting on
    manager = CgroupManager.detect(root)
    cg = manager.create("pkube/pod-1/c1", Resources(memory_bytes=64 << 20, cpu_quota_us=50000,
                                                    cpu_shares=512, pids_limit=20))
    assert (root / "memory/pkube/pod-1/c1/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "memory/pkube/pod-1/c1/memory.memsw.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "cpu/pkube/pod-1/c1/cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "cpu/pkube/pod-1/c1/cpu.cfs_period_us").read_text() == "100000"
    assert (root / "cpu/pkube/pod-1/c1/cpu.shares").read_text() == "512"
    assert (root / "pids/pkube/pod-1/c1/pids.max").read_text() == "20"
    assert (root / "cpuacct/pkube/pod-1/c1").is_dir() and (root / "freezer/pkube/pod-1/c1").is_dir()
    assert cg.version == 1


def test_v1_set_none_means_unlimited(tmp_path):
    root = make_v1_root(tmp_path)
    cg = CgroupManager.detect(root).create("pkube/c", Resources(memory_bytes=1 << 20, pids_limit=3))
    cg.set(None)
    assert (root / "memory/pkube/c/memory.limit_in_bytes").read_text() == "-1"
    assert (root / "cpu/pkube/c/cpu.cfs_quota_us").read_text() == "-1"
    assert (root / "cpu/pkube/c/cpu.shares").read_text() == "1024"
    assert (root / "pids/pkube/c/pids.max").read_text() == "max"


def test_v1_add_process_joins_every_controller(tmp_path):
    root = make_v1_root(tmp_path)
    cg = CgroupManager.detect(root).create("pkube/c")
    assert cg.procs_files()[0] == f"{root}/cpu/pkube/c/cgroup.procs"   # paths are str
    cg.add_process(4242)
    for controller in ("cpu", "cpuacct", "memory", "pids", "freezer"):
        assert (root / controller / "pkube/c/cgroup.procs").read_text() == "4242"


def test_v1_limit_on_a_missing_controller_is_an_error(tmp_path):
    root = make_v1_root(tmp_path)
    (root / "pids" / "cgroup.procs").unlink()
    manager = CgroupManager.detect(root)
    with pytest.raises(CgroupError, match="pids"):
        manager.create("pkube/c", Resources(pids_limit=5))
    assert not (root / "memory/pkube/c").exists()  # a failed create leaves nothing behind


def test_v1_stats_and_oom(tmp_path):
    root = make_v1_root(tmp_path)
    cg = CgroupManager.detect(root).create("pkube/c")
    d = root / "memory/pkube/c"
    (d / "memory.usage_in_bytes").write_text("1000\n")
    (d / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "cpuacct/pkube/c/cpuacct.usage").write_text("777\n")
    (root / "pids/pkube/c/pids.current").write_text("3\n")
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (d / "memory.stat").write_text("cache 400\ninactive_file 50\ntotal_inactive_file 300\n")
    stats = cg.stats()
    assert stats.memory_working_set_bytes == 700
    assert (stats.memory_usage_bytes, stats.memory_limit_bytes, stats.cpu_usage_ns,
            stats.pids_current) == (1000, None, 777, 3)
    assert not cg.oom_killed()
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cg.oom_killed()


def test_v1_destroy_removes_children_first_and_is_idempotent(tmp_path):
    root = make_v1_root(tmp_path)
    manager = CgroupManager.detect(root)
    manager.create("pkube/pod-1/c1")
    manager.create("pkube/pod-1/c2")
    pod = manager.open("pkube/pod-1")
    pod.destroy()
    pod.destroy()
    assert not (root / "memory/pkube/pod-1").exists()
    assert (root / "memory/pkube").is_dir()


def test_v2_create_enables_controllers_down_the_path(tmp_path):
    root = make_v2_dir(tmp_path, "cpu memory pids io")
    make_v2_dir(root / "pkube")
    make_v2_dir(root / "pkube" / "c")
    cg = CgroupManager.detect(root).create(
        "pkube/c", Resources(memory_bytes=1 << 20, cpu_quota_us=20000, cpu_shares=1024, pids_limit=7))
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (root / "pkube/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    d = root / "pkube/c"
    assert (d / "memory.max").read_text() == str(1 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == str(shares_to_weight(1024))
    assert (d / "pids.max").read_text() == "7"
    assert cg.version == 2


def test_v2_unlimited_values(tmp_path):
    root = make_v2_dir(tmp_path)
    make_v2_dir(root / "c")
    CgroupManager.detect(root).create("c", Resources())
    assert (root / "c/memory.max").read_text() == "max"
    assert (root / "c/cpu.max").read_text() == "max 100000"
    assert (root / "c/cpu.weight").read_text() == "100"
    assert (root / "c/pids.max").read_text() == "max"


def test_v2_limit_without_the_controller_is_an_error(tmp_path):
    root = make_v2_dir(tmp_path, "cpu pids")
    (root / "c").mkdir()  # the kernel made no memory.* files: memory is not enabled
    (root / "c" / "cgroup.controllers").write_text("cpu pids")
    with pytest.raises(CgroupError, match="memory.max"):
        CgroupManager.detect(root).create("c", Resources(memory_bytes=1 << 20))


def test_v2_stats_and_oom(tmp_path):
    root = make_v2_dir(tmp_path)
    d = make_v2_dir(root / "c")
    cg = CgroupManager.detect(root).open("c")
    (d / "memory.current").write_text("2048\n")
    (d / "memory.max").write_text("max\n")
    (d / "cpu.stat").write_text("usage_usec 5\nuser_usec 3\nsystem_usec 2\n")
    (d / "pids.current").write_text("1\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (d / "memory.stat").write_text("anon 1000\nfile 3000\ninactive_file 2500\n")
    assert cg.stats().memory_working_set_bytes == 0  # never negative
    assert cg.stats().memory_usage_bytes == 2048
    assert cg.stats().memory_limit_bytes is None
    assert cg.stats().cpu_usage_ns == 5000
    assert cg.stats().pids_current == 1
    assert cg.oom_killed()


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000), (1, 1), (10**6, 10000)])
def test_shares_to_weight_matches_kubernetes(shares, weight):
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize("kwargs", [dict(memory_bytes=0), dict(pids_limit=-1), dict(cpu_quota_us=10),
                                    dict(cpu_period_us=10), dict(cpu_shares="2")])
def test_bad_resources_are_refused(kwargs):
    with pytest.raises(ValueError):
        Resources(**kwargs)


def test_resources_from_cpus():
    assert Resources.from_cpus(1.5).cpu_quota_us == 150000
