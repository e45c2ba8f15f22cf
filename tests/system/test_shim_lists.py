"""The shim holds every entry of its config's lists (bind mounts, masked and read-only paths,
namespace joins, cgroup files): they are sized to the config, so a 65th volume or a 33rd
masked path is applied, not silently dropped as fixed arrays did."""

from __future__ import annotations

import pytest

from pkube.runtime import runtime as runtime_module
from pkube.runtime.spec import ContainerSpec, Mount

MANY = 70   # more than any of the shim's old fixed arrays (64 binds, 32 masked, 32 read-only)


def volumes(tmp_path, prefix: str) -> list[Mount]:
    """MANY host directories, each holding a file `f` that names it, mounted at /PREFIX<i>."""
    mounts = []
    for i in range(MANY):
        source = tmp_path / f"{prefix}{i}"
        source.mkdir()
        (source / "f").write_text(f"{prefix}{i}\n")
        mounts.append(Mount(str(source), f"/{prefix}{i}"))
    return mounts


def test_seventy_volumes_are_all_mounted(pdocker, tmp_path):
    mounts = volumes(tmp_path, "v")
    flags = [arg for m in mounts for arg in ("-v", f"{m.source}:{m.target}")]
    result = pdocker("run", "--rm", "--network", "none", *flags, "busybox", "cat", "/v0/f", "/v64/f", f"/v{MANY - 1}/f")
    assert result.stdout == f"v0\nv64\nv{MANY - 1}\n"


@pytest.fixture
def more_masked_and_readonly(monkeypatch):
    """Containers started from now on also mask /m<i> and make /r<i> read-only (i < MANY)."""
    made = runtime_module.ShimConfig

    def config(**kwargs):
        base = made(**kwargs)
        return made(**kwargs, masked=tuple(base.masked) + tuple(f"/m{i}" for i in range(MANY)),
                    readonly=tuple(base.readonly) + tuple(f"/r{i}" for i in range(MANY)))
    monkeypatch.setattr(runtime_module, "ShimConfig", config)


def test_seventy_masked_and_read_only_paths_are_all_applied(rt, tmp_path, more_masked_and_readonly):
    last = MANY - 1
    spec = ContainerSpec(image="busybox", network="none", mounts=volumes(tmp_path, "m") + volumes(tmp_path, "r"),
                         command=["sh", "-c", f"ls -A /m{last}; echo masked; touch /r{last}/x 2>&1; cat /r{last}/f"])
    state = rt.create(spec)
    rt.start(state.id)
    assert rt.wait(state.id, timeout=30) == 0
    output = b"".join(entry.data for entry in rt.logs(state.id)).decode()
    assert output.startswith("masked\n")   # /m69 is an empty tmpfs over the volume
    assert "Read-only file system" in output and output.endswith(f"r{last}\n")
