"""Pure parts of the runtime core: spec resolution, the shim config, namespace plans, the
lifecycle state machine, log reading, rootfs paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pkube.runtime import logs, rootfs
from pkube.runtime.namespaces import plan_for, plan_for_exec, plan_for_sandbox
from pkube.runtime.spec import (ContainerSpec, Mount, ShimConfig, SpecError, capability_mask,
                          merge_image_config)
from pkube.runtime.state import ContainerState, IllegalTransition, StateStore, Status

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=1"],
         "WorkingDir": "/app", "User": "daemon"}


@pytest.mark.parametrize("spec, argv", [
    (ContainerSpec(image="x"), ["/entry", "serve"]),
    (ContainerSpec(image="x", command=["other"]), ["/entry", "other"]),
    (ContainerSpec(image="x", entrypoint=["sh"]), ["sh"]),
    (ContainerSpec(image="x", entrypoint=["sh"], command=["-c", "true"]), ["sh", "-c", "true"]),
])
def test_docker_rules_for_entrypoint_and_cmd(spec, argv):
    assert merge_image_config(spec, IMAGE)["argv"] == argv


def test_env_workdir_user_come_from_image_unless_overridden():
    resolved = merge_image_config(ContainerSpec(image="x", env={"A": "2", "B": "3"}), IMAGE)
    assert resolved["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert (resolved["workdir"], resolved["user"]) == ("/app", "daemon")
    resolved = merge_image_config(ContainerSpec(image="x", workdir="/w", user="1:2"), IMAGE)
    assert (resolved["workdir"], resolved["user"]) == ("/w", "1:2")


def test_no_command_is_a_spec_error():
    with pytest.raises(SpecError, match="no command"):
        merge_image_config(ContainerSpec(image="x"), {})


@pytest.mark.parametrize("kwargs, match", [
    ({"network": "wifi"}, "network"), ({"workdir": "rel"}, "workdir"),
    ({"env": {"A=B": "1"}}, "env"), ({"image": ""}, "image"),
])
def test_bad_specs_are_refused(kwargs, match):
    spec = ContainerSpec(**{"image": "busybox", **kwargs})
    with pytest.raises(SpecError, match=match):
        spec.validate()


def test_mounts_must_be_absolute_and_not_climb():
    with pytest.raises(SpecError):
        Mount("rel", "/x")
    with pytest.raises(SpecError):
        Mount("/a", "/x/../../etc")


def test_shim_config_is_nul_separated_pairs():
    config = ShimConfig(argv=["sh", "-c", "a b"], env=["A=1"], plan=plan_for("none"),
                        exit_file="/e", sock="s", rootfs="/r", mounts=[Mount("/h", "/c", True)])
    tokens = config.encode().split(b"\0")[:-1]
    pairs = list(zip(tokens[::2], tokens[1::2]))
    assert pairs[:4] == [(b"arg", b"sh"), (b"arg", b"-c"), (b"arg", b"a b"), (b"env", b"A=1")]
    assert (b"bind_src", b"/h") in pairs and (b"bind_ro", b"1") in pairs
    assert (b"mask", b"/proc/kcore") in pairs and (b"readonly", b"/proc/sys") in pairs
    assert (b"unshare", b"net") in pairs
    with pytest.raises(SpecError, match="NUL"):
        ShimConfig(argv=["a\0b"], env=[], plan=plan_for("none"), exit_file="/e", sock="s").encode()


def test_docker_default_capability_mask():
    assert capability_mask() == 0xA80425FB


def test_namespace_plans():
    assert sorted(plan_for("bridge").create) == ["cgroup", "ipc", "mnt", "net", "pid", "uts"]
    host = plan_for("host")
    assert "net" not in host.create and not host.join
    peer = plan_for("container:x", peer_pid=42)
    assert peer.join == {"net": "/proc/42/ns/net"} and "net" not in peer.create
    pod = plan_for("bridge", sandbox_pid=7, share_pid=True)
    assert set(pod.join) == {"net", "ipc", "uts", "pid"} and sorted(pod.create) == ["cgroup", "mnt"]
    assert set(plan_for("bridge", sandbox_pid=7).join) == {"net", "ipc", "uts"}
    assert sorted(plan_for_sandbox(share_pid=True).create) == ["ipc", "net", "pid", "uts"]
    assert len(plan_for_exec(9).join) == 6 and not plan_for_exec(9).create
    with pytest.raises(ValueError, match="not running"):
        plan_for("container:x")


def test_lifecycle_guards_and_atomic_persistence(tmp_path):
    store = StateStore(tmp_path)
    state = ContainerState(id="a" * 64, name="n", image="busybox", image_id="sha256:1")
    os.mkdir(store.dir(state.id))
    state.transition(Status.RUNNING)
    state.transition(Status.EXITED)
    with pytest.raises(IllegalTransition, match="exited, cannot become exited"):
        state.transition(Status.EXITED)
    store.save(state)
    assert store.load(state.id) == state and store.ids() == [state.id]
    assert os.listdir(store.dir(state.id)) == ["state.json"]
    assert store.load("b" * 64) is None


def write_log(path: Path, entries):
    path.write_text("".join(json.dumps({"log": d, "stream": s, "time": t}) + "\n" for s, d, t in entries))


def test_logs_tail_since_and_non_utf8(tmp_path):
    path = tmp_path / "log"
    write_log(path, [("stdout", "a\n", "2026-01-01T00:00:00.000000001Z"),
                     ("stderr", "b\n", "2026-01-01T00:00:01.5Z"),
                     ("stdout", "c", "2026-01-01T00:00:02Z")])
    assert [e.data for e in logs.read(path)] == [b"a\n", b"b\n", b"c"]
    assert [e.data for e in logs.read(path, tail=2)] == [b"b\n", b"c"]
    assert logs.read(path, tail=0) == []
    since = logs.parse_time("2026-01-01T00:00:01Z")
    assert [e.stream for e in logs.read(path, since=since)] == ["stderr", "stdout"]
    assert logs.read(path)[0].render(timestamps=True).startswith(b"2026-01-01T00:00:00.000000001Z a")
    assert logs.read(tmp_path / "missing") == []


def test_follow_reads_until_the_container_stops(tmp_path):
    path = tmp_path / "log"
    write_log(path, [("stdout", "1\n", "2026-01-01T00:00:00Z")])
    states = iter([True, False])

    def sleep(_):
        with open(path, "a") as f:
            f.write(json.dumps({"log": "2\n", "stream": "stdout", "time": "2026-01-01T00:00:01Z"}) + "\n")
    followed = [e.data for e in logs.follow(path, lambda: next(states), sleep=sleep)]
    assert followed == [b"1\n", b"2\n"]


def test_overlay_lowerdirs_put_the_init_layer_on_top(tmp_path):
    options = rootfs.overlay_options(tmp_path, ["/l/base", "/l/top"])
    assert options.startswith(f"lowerdir={tmp_path}/init:/l/top:/l/base,upperdir={tmp_path}/upper,")
    with pytest.raises(rootfs.RootfsError, match="one page"):
        rootfs.overlay_options(tmp_path, ["/x" * 300] * 10)


def test_resolv_conf_drops_loopback_nameservers(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nsearch lan\n")
    assert rootfs.host_resolv_conf(conf) == "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    conf.write_text("nameserver 10.0.0.2\n")
    assert rootfs.host_resolv_conf(conf) == "nameserver 10.0.0.2\n"


def test_syscall_errors_name_the_operation_and_the_path(tmp_path):
    from pkube.runtime import syscalls
    with pytest.raises(syscalls.SyscallError) as info:
        syscalls.mount("overlay", tmp_path / "missing", "overlay", 0, "lowerdir=/nope")
    assert str(info.value) == f"mount overlay on {tmp_path / 'missing'}: No such file or directory"
    assert info.value.errno == 2


def test_shim_config_limits_are_clear_errors():
    plan = plan_for("none")
    with pytest.raises(SpecError, match="at most 500"):
        ShimConfig(argv=["x"] * 501, env=[], plan=plan, exit_file="/e", sock="s").encode()
    with pytest.raises(SpecError, match="bytes"):
        ShimConfig(argv=["x" * 200000], env=[], plan=plan, exit_file="/e", sock="s").encode()


def test_a_reused_pid_is_not_mistaken_for_the_container(tmp_path):
    """The record names a live pid (ours) but another start time: the container is gone."""
    from pkube.runtime.process import proc_start_time
    from pkube.runtime.runtime import Runtime
    rt = Runtime(tmp_path)
    state = ContainerState(id="c" * 64, name="ghost", image="busybox", image_id="")
    os.makedirs(rt.store.dir(state.id))
    state.transition(Status.RUNNING)
    state.pid, state.pid_start = os.getpid(), proc_start_time(os.getpid()) + 1
    rt.store.save(state)
    seen = rt.get("ghost")
    assert seen.status == Status.EXITED and seen.exit_code == 255
    state.pid_start = proc_start_time(os.getpid())
    state.status = Status.RUNNING
    rt.store.save(state)
    assert rt.get("ghost").running


def recorded_running(rt, name: str, pid_start_offset: int = 0) -> ContainerState:
    """A record saying `name` runs as this test's process (+ offset: a reused pid)."""
    from pkube.runtime.process import proc_start_time
    state = ContainerState(id=os.urandom(32).hex(), name=name, image="busybox", image_id="")
    os.makedirs(rt.store.dir(state.id))
    state.transition(Status.RUNNING)
    state.pid, state.pid_start = os.getpid(), proc_start_time(os.getpid()) + pid_start_offset
    rt.store.save(state)
    return state


def test_remove_refuses_a_running_container_and_removes_an_exited_one(tmp_path):
    from pkube.runtime.runtime import Conflict, NoSuchContainer, Runtime
    rt = Runtime(tmp_path)
    running = recorded_running(rt, "alive")
    with pytest.raises(Conflict, match="cannot remove a running container"):
        rt.remove("alive")
    assert rt.get("alive").running
    gone = recorded_running(rt, "gone")
    with open(os.path.join(rt.store.dir(gone.id), "exit"), "w") as f:
        f.write("3 2026-01-01T00:00:00Z\n")
    rt.remove(gone.id[:12])
    assert not os.path.exists(rt.store.dir(gone.id)) and rt.store.ids() == [running.id]
    with pytest.raises(NoSuchContainer):
        rt.remove("gone")


@pytest.mark.parametrize("name, valid", [("web", True), ("a.b-c_d", True), ("9lives", True),
                                         ("", False), ("-x", False), ("_x", False), ("a b", False),
                                         ("a/b", False), ("é", False)])
def test_container_names_follow_docker(name, valid):
    from pkube.runtime.names import valid_name
    assert valid_name(name) is valid


def test_runtime_paths_are_str_whatever_the_root_was_given_as(tmp_path):
    from pkube.runtime.runtime import Runtime
    rt = Runtime(tmp_path)
    assert rt.root == str(tmp_path) and rt.store.dir("x") == f"{tmp_path}/containers/x"
    assert rootfs.lower_dirs(tmp_path, [Path("/l/a"), "/l/b"]) == [f"{tmp_path}/init", "/l/b", "/l/a"]


def test_an_id_shaped_path_never_resolves_outside_the_store(tmp_path):
    from pkube.runtime.runtime import NoSuchContainer, Runtime
    rt = Runtime(tmp_path / "root")
    outside = tmp_path / ("x" * 40)
    outside.mkdir()
    (outside / "state.json").write_text("{}")
    relative = os.path.relpath(outside, rt.store.root)   # ../x...x
    pad = 64 - len(relative)
    sneaky = "./" * (pad // 2) + "/" * (pad % 2) + relative
    assert len(sneaky) == 64 and os.path.exists(os.path.join(rt.store.root, sneaky, "state.json"))
    with pytest.raises(NoSuchContainer):
        rt.remove(sneaky)
    assert (outside / "state.json").exists()


def test_an_exit_recorded_while_the_supervisor_leaves_is_not_lost(tmp_path, monkeypatch):
    """The shim writes the exit file, then exits: a refresh that misses the file, then finds
    both processes gone, reads it again instead of reporting a vanished supervisor (255)."""
    from pkube.runtime import process
    from pkube.runtime.runtime import Runtime
    rt = Runtime(tmp_path)
    state = ContainerState(id="d" * 64, name="late", image="busybox", image_id="")
    os.makedirs(rt.store.dir(state.id))
    state.transition(Status.RUNNING)
    rt.store.save(state)
    exit_file = os.path.join(rt.store.dir(state.id), "exit")
    real_read = process.read_exit_file

    def read_then_shim_writes(path):
        result = real_read(path)
        if result is None and not os.path.exists(exit_file):
            with open(exit_file, "w") as f:   # the shim, just after our first look
                f.write("0 2026-01-01T00:00:00.000000000Z")
        return result
    monkeypatch.setattr(process, "read_exit_file", read_then_shim_writes)
    seen = rt.get("late")
    assert seen.status == Status.EXITED and seen.exit_code == 0
