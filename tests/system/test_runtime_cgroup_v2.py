"""Containers on a cgroup v2 hierarchy are created inside their cgroup (the shim's clone3
with CLONE_INTO_CGROUP) rather than moved into it. On a hybrid host the unified mount
(/sys/fs/cgroup/unified, no controllers) is such a hierarchy; on a v2-only host it is the
default one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkube.runtime.cgroups import DEFAULT_ROOT, CgroupManager
from pkube.runtime.runtime import Runtime
from pkube.runtime.spec import ContainerSpec, SandboxSpec

pytestmark = pytest.mark.root


def v2_root() -> Path | None:
    for candidate in (Path(DEFAULT_ROOT), Path(DEFAULT_ROOT) / "unified"):
        if (candidate / "cgroup.controllers").exists():
            return candidate
    return None


@pytest.fixture
def v2_rt(rt_root):
    root, parent = rt_root
    cgroup_root = v2_root()
    if cgroup_root is None:
        pytest.skip("no cgroup v2 hierarchy on this host")
    try:
        yield Runtime(root, cgroup_root=cgroup_root, cgroup_parent=parent)
    finally:
        CgroupManager.detect(cgroup_root).open(parent).destroy()


def cgroup_of(pid: int) -> str:
    """The v2 cgroup of `pid` as the host sees it."""
    return next(line[3:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))


def test_container_and_exec_run_inside_their_cgroup_and_removal_leaves_none(v2_rt):
    state = v2_rt.create(ContainerSpec(image="busybox", command=["sleep", "1000"], network="none"))
    v2_rt.start(state.id)
    state = v2_rt.get(state.id)
    directory = Path(v2_rt.cgroups.open(state.cgroup).dir)
    assert cgroup_of(state.pid) == "/" + state.cgroup
    assert str(state.pid) in (directory / "cgroup.procs").read_text().split()
    # an exec lands in the same cgroup: inside the container's cgroup namespace that is "/"
    result = v2_rt.exec(state.id, ["cat", "/proc/self/cgroup"])
    assert (result.exit_code, result.stdout.decode().splitlines()[-1]) == (0, "0::/")
    v2_rt.remove(state.id, force=True)
    assert not directory.exists()


def test_sandbox_pause_runs_inside_its_cgroup(v2_rt):
    sandbox = v2_rt.create_sandbox(SandboxSpec(name="pod-v2", network="none"))
    try:
        assert cgroup_of(sandbox.pid) == "/" + sandbox.cgroup
    finally:
        v2_rt.remove_sandbox(sandbox.id)


def test_a_cgroup_the_shim_cannot_join_fails_the_start_with_the_reason(rt_root, tmp_path):
    """The v1 join runs in the shim (a helper forked at the start): its error is the start's."""
    from pkube.runtime import process
    from pkube.runtime.namespaces import plan_for_sandbox
    from pkube.runtime.spec import ShimConfig
    root, _ = rt_root
    missing = tmp_path / "no-such-cgroup" / "cgroup.procs"
    config = ShimConfig(argv=["/bin/true"], env=[], plan=plan_for_sandbox(False), exit_file=str(tmp_path / "exit"),
                        sock=process.socket_name(tmp_path), cwd="/", cgroup_procs=[str(missing)])
    with pytest.raises(process.StartError, match=f"join cgroup {missing}: No such file or directory"):
        process.launch(process.binaries(root / "bin").shim, config.encode())
    assert process.wait_for_exit(config.sock, tmp_path / "exit", [], timeout=10)[0] == 127
