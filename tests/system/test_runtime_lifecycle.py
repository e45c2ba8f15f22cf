"""Container lifecycle through the library on the real kernel: exec, cp, logs, stop, kill,
restart, rm, OOM, limits, commit/diff/export, survival of the starting process, sandboxes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from pkube.runtime.cgroups import Resources
from pkube.runtime.process import alive
from pkube.runtime.runtime import Conflict, NoSuchContainer, Runtime
from pkube.runtime.spec import ContainerSpec, Mount, SandboxSpec
from pkube.runtime.state import IllegalTransition, Status

pytestmark = pytest.mark.root


def start(rt, script: str, **kw):
    state = rt.create(ContainerSpec(image="busybox", command=["sh", "-c", script], network="none", **kw))
    rt.start(state.id)
    return rt.get(state.id)


def output(rt, cid: str, stream: str = "stdout") -> str:
    return b"".join(e.data for e in rt.logs(cid) if e.stream == stream).decode()


def wait_for_output(rt, cid: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in output(rt, cid):
        assert time.monotonic() < deadline, f"{text!r} never appeared in the logs"
        time.sleep(0.02)


def test_exec_runs_in_the_container_with_env_workdir_user_and_stdin(rt):
    state = start(rt, "echo ready; exec sleep 1000", env={"FROM_RUN": "1"})
    result = rt.exec(state.id, ["sh", "-c", "echo $FROM_RUN $EXTRA; pwd; id -u; hostname; exit 4"],
                     env={"EXTRA": "x"}, workdir="/tmp", user="nobody")
    assert result.exit_code == 4
    assert result.stdout.decode().split() == ["1", "x", "/tmp", "65534", state.short_id]
    result = rt.exec(state.id, ["sh", "-c", "cat; echo err >&2"], stdin=b"piped\n")
    assert (result.stdout, result.stderr) == (b"piped\n", b"err\n")
    ps = rt.exec(state.id, ["ps", "-o", "pid,comm"]).stdout.decode()
    assert "sleep" in ps and "pytest" not in ps
    missing = pytest.raises(Exception, match="executable file not found")
    with missing:
        rt.exec(state.id, ["no-such-binary"])
    assert os.listdir(os.path.join(rt.store.dir(state.id), "execs")) == []   # each exec cleans up
    rt.remove(state.id, force=True)


def test_exec_timeout_kills_the_command(rt):
    state = start(rt, "exec sleep 1000")
    with pytest.raises(TimeoutError, match="killed"):
        rt.exec(state.id, ["sleep", "1000"], timeout=0.5)
    assert rt.exec(state.id, ["ps", "-o", "args"]).stdout.decode().count("sleep 1000") == 1   # the main one
    assert rt.exec(state.id, ["true"], timeout=30).exit_code == 0
    rt.remove(state.id, force=True)


def test_exec_into_a_stopped_container_is_refused(rt):
    state = start(rt, "true")
    rt.wait(state.id, timeout=30)
    with pytest.raises(Conflict, match="not running"):
        rt.exec(state.id, ["true"])


def test_cp_both_ways_running_and_stopped_and_no_escape(rt, tmp_path):
    state = start(rt, "echo inside > /tmp/made; echo ready; exec sleep 1000")
    wait_for_output(rt, state.id, "ready")
    src = tmp_path / "hello.txt"
    src.write_text("from host")
    rt.cp_in(state.id, src, "/tmp")
    assert rt.exec(state.id, ["cat", "/tmp/hello.txt"]).stdout == b"from host"
    rt.exec(state.id, ["ln", "-s", "../../../../../etc", "/tmp/evil"])
    rt.cp_out(state.id, "/tmp/made", tmp_path / "made")
    assert (tmp_path / "made").read_text() == "inside\n"
    rt.cp_out(state.id, "/tmp/evil/passwd", tmp_path / "passwd")
    assert "root:x:0:0" in (tmp_path / "passwd").read_text()
    assert (tmp_path / "passwd").read_text() != open("/etc/passwd").read()
    name = f"pwned-{state.short_id}"
    rt.exec(state.id, ["ln", "-s", "/", "/tmp/hostroot"])
    rt.cp_in(state.id, src, f"/tmp/hostroot/{name}")
    assert not os.path.exists(f"/{name}")
    assert rt.exec(state.id, ["cat", f"/{name}"]).stdout == b"from host"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "leaf").write_text("leaf")
    rt.cp_in(state.id, tree, "/tmp")
    rt.cp_in(state.id, tree, "/opt")   # missing: becomes /opt itself, like docker cp
    assert rt.exec(state.id, ["cat", "/tmp/tree/sub/leaf", "/opt/sub/leaf"]).stdout == b"leafleaf"
    rt.cp_out(state.id, "/tmp/tree", tmp_path / "copied")
    assert (tmp_path / "copied" / "sub" / "leaf").read_text() == "leaf"
    with pytest.raises(Exception, match="no such file"):
        rt.cp_out(state.id, "/nope", tmp_path / "x")
    rt.stop(state.id, timeout=0)
    rt.cp_in(state.id, src, "/hello-stopped")
    rt.cp_out(state.id, "/hello-stopped", tmp_path / "back")
    assert (tmp_path / "back").read_text() == "from host"
    rt.remove(state.id)


def test_logs_per_stream_with_tail_since_and_follow(rt):
    state = start(rt, "echo one; echo two >&2; sleep 0.3; echo three")
    followed = [e.data for e in rt.logs(state.id, follow=True)]
    assert followed == [b"one\n", b"two\n", b"three\n"]
    entries = rt.logs(state.id)
    assert [e.stream for e in entries] == ["stdout", "stderr", "stdout"]
    assert [e.data for e in rt.logs(state.id, tail=1)] == [b"three\n"]
    from pkube.runtime.logs import parse_time
    since = parse_time(entries[2].time)
    assert [e.data for e in rt.logs(state.id, since=since)] == [b"three\n"]


def test_stop_kill_restart_and_remove(rt):
    state = start(rt, "trap 'echo bye; exit 3' TERM; echo started; while true; do sleep 0.1; done")
    wait_for_output(rt, state.id, "started")   # the trap is set
    stopped = rt.stop(state.id, timeout=10)
    assert stopped.status == Status.EXITED and stopped.exit_code == 3
    assert "bye" in output(rt, state.id)
    with pytest.raises(Conflict):
        rt.kill(state.id)
    rt.start(state.id)
    again = rt.get(state.id)
    assert again.running and again.pid != state.pid
    deadline = time.monotonic() + 30
    while output(rt, state.id).count("started") < 2:   # logs of both runs, in one log
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rt.kill(again.id, signal.SIGKILL)
    assert rt.wait(again.id, timeout=30) == 137
    rt.start(state.id)
    with pytest.raises(Conflict, match="Stop the container"):
        rt.remove(state.id)
    cgroup = rt.get(state.id).cgroup
    rt.remove(state.id, force=True)
    with pytest.raises(NoSuchContainer):
        rt.get(state.id)
    assert not rt.cgroups.open(cgroup).exists()
    assert not os.path.exists(rt.store.dir(state.id))


def test_names_are_unique_and_resolve(rt):
    state = rt.create(ContainerSpec(image="busybox", command=["true"], name="alpha", network="none"))
    with pytest.raises(Conflict, match="already in use"):
        rt.create(ContainerSpec(image="busybox", command=["true"], name="alpha", network="none"))
    assert rt.get("alpha").id == state.id == rt.get(state.id[:6]).id
    assert rt.get("alpha").status == Status.CREATED
    rt.remove("alpha")
    with pytest.raises(NoSuchContainer):
        rt.get("alpha")
    again = rt.create(ContainerSpec(image="busybox", command=["true"], name="alpha", network="none"))
    assert again.id != state.id and rt.get("/alpha").id == again.id   # a removed name is free again
    generated = rt.create(ContainerSpec(image="busybox", command=["true"], network="none"))
    assert rt.get(generated.name).id == generated.id
    rt.remove(again.id)
    rt.remove(generated.name)


def test_memory_limit_oom_kill_reports_137_and_oomkilled(rt):
    state = start(rt, "tail /dev/zero", resources=Resources(memory_bytes=16 << 20))
    assert rt.wait(state.id, timeout=60) == 137
    assert rt.get(state.id).oom_killed


def test_pids_limit(rt):
    state = start(rt, "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait; echo end",
                  resources=Resources(pids_limit=4))
    rt.wait(state.id, timeout=30)
    assert "can't fork" in output(rt, state.id, "stderr") or "Resource temporarily" in output(rt, state.id, "stderr")


def test_bind_mounts_rw_and_ro(rt, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir(), ro.mkdir()
    (ro / "file").write_text("ro data\n")
    state = start(rt, "echo written > /data/out; cat /conf/file; echo x > /conf/file; echo rc=$?",
                  mounts=[Mount(str(rw), "/data"), Mount(str(ro), "/conf", readonly=True)])
    rt.wait(state.id, timeout=30)
    assert (rw / "out").read_text() == "written\n"
    assert output(rt, state.id).split() == ["ro", "data", "rc=1"]
    assert (ro / "file").read_text() == "ro data\n"


def test_commit_whiteout_round_trip_and_diff_and_export(rt):
    state = start(rt, "rm /etc/group && echo new > /newfile && echo x >> /etc/passwd")
    assert rt.wait(state.id, timeout=30) == 0
    changes = dict((path, kind) for kind, path in rt.diff(state.id))
    assert changes["/etc/group"] == "D" and changes["/newfile"] == "A" and changes["/etc/passwd"] == "C"
    assert "/etc/hosts" not in changes and "/etc/hostname" not in changes
    tag = f"committed-{state.short_id}:v1"
    image = rt.commit(state.id, tag)
    top = Path(image.layer_dirs[-1])
    assert not (top / "etc" / "hosts").exists() and not (top / "etc" / "resolv.conf").exists()
    buf = io.BytesIO()
    rt.export(state.id, buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert any(n.endswith("newfile") for n in names) and not any(n.endswith("etc/group") for n in names)
    spec = ContainerSpec(image=tag, command=["sh", "-c", "ls /etc/group 2>&1; cat /newfile"], network="none")
    child = rt.create(spec)
    rt.start(child.id)
    rt.wait(child.id, timeout=30)
    out = output(rt, child.id)
    assert "No such file" in out and "new" in out
    rt.remove(child.id)
    rt.remove(state.id)
    rt.images.remove(tag)


SURVIVOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pkube.runtime.runtime import Runtime
    from pkube.runtime.spec import ContainerSpec
    rt = Runtime(Path(sys.argv[1]), cgroup_parent=sys.argv[2])
    state = rt.create(ContainerSpec(image="busybox", network="none",
                                    command=["sh", "-c", "echo alive; exec sleep 1000"]))
    attachment = rt.start(state.id, attach="o")
    print(state.id, flush=True)
    for frame in attachment.frames():
        pass
""")


def test_containers_survive_sigkill_of_their_starter_and_are_readopted(rt_root):
    root, parent = rt_root
    starter = subprocess.Popen([sys.executable, "-c", SURVIVOR, str(root), parent],
                               stdout=subprocess.PIPE, text=True)
    cid = starter.stdout.readline().strip()
    starter.kill()
    starter.wait()
    rt = Runtime(root, cgroup_parent=parent)
    state = rt.get(cid)
    assert state.running and alive(state.pid, state.pid_start)
    rt.kill(cid, signal.SIGTERM)
    rt.kill(cid, signal.SIGKILL)
    assert Runtime(root, cgroup_parent=parent).wait(cid, timeout=30) == 137
    after = Runtime(root, cgroup_parent=parent).get(cid)
    assert after.status == Status.EXITED and after.finished_at > after.started_at
    assert [e.data for e in rt.logs(cid)] == [b"alive\n"]
    rt.remove(cid)


def test_sandbox_containers_share_namespaces(rt):
    sandbox = rt.create_sandbox(SandboxSpec(name="pod-a", hostname="pod-a", network="none",
                                            labels={"pod": "a"}, share_pid=True))
    assert sandbox.running and [s.id for s in rt.list_sandboxes({"pod": "a"})] == [sandbox.id]
    one = rt.create(ContainerSpec(image="busybox", sandbox_id=sandbox.id,
                                  command=["sh", "-c", "echo shared > /dev/shm/x 2>/dev/null; exec sleep 1000"]))
    rt.start(one.id)
    two = rt.create(ContainerSpec(image="busybox", sandbox_id=sandbox.id, command=["sleep", "1000"]))
    rt.start(two.id)
    result = rt.exec(two.id, ["sh", "-c", "hostname; ps -o comm | sort | uniq"])
    lines = result.stdout.decode().split()
    assert lines[0] == "pod-a"
    assert "pause" in " ".join(lines) and "sleep" in lines
    one_ns = rt.exec(one.id, ["readlink", "/proc/self/ns/net"]).stdout
    two_ns = rt.exec(two.id, ["readlink", "/proc/self/ns/net"]).stdout
    assert one_ns == two_ns
    rt.stop_sandbox(sandbox.id, timeout=5)
    assert not rt.get(sandbox.id).running and not rt.get(one.id).running
    assert rt.get(sandbox.id).exit_code == 0, "pause exits 0 on SIGTERM"
    rt.remove_sandbox(sandbox.id)
    assert rt.list(all=True) == [] and rt.list_sandboxes() == []


def test_a_sandbox_whose_shims_were_killed_is_still_removed_with_its_processes(rt):
    """A node gone (its kubelet and every process of its network namespace killed -9, the
    shims too): `pkube down` must still remove the pods it left, the pause and a container
    that ignores SIGTERM included."""
    sandbox = rt.create_sandbox(SandboxSpec(name="orphaned", network="none"))
    sleeper = rt.create(ContainerSpec(image="busybox", sandbox_id=sandbox.id, command=["sleep", "1000"]))
    rt.start(sleeper.id)
    sleeper = rt.get(sleeper.id)
    for shim in (sandbox.shim_pid, sleeper.shim_pid):
        os.kill(shim, signal.SIGKILL)
    rt.remove_sandbox(sandbox.id)
    assert rt.list(all=True) == [] and rt.list_sandboxes() == []
    assert not alive(sleeper.pid, sleeper.pid_start) and not alive(sandbox.pid, sandbox.pid_start)


def test_illegal_transition_is_a_typed_error(rt):
    from pkube.runtime.state import ContainerState
    state = ContainerState(id="x" * 64, name="x", image="busybox", image_id="")
    with pytest.raises(IllegalTransition):
        state.transition(Status.CREATED)


def test_detached_auto_remove_container_is_gone_after_it_exits(rt):
    state = start(rt, "exit 0", auto_remove=True)
    assert rt.wait(state.id, timeout=30) == 0
    assert rt.list(all=True) == []
    with pytest.raises(NoSuchContainer):
        rt.get(state.id)


def test_exec_with_a_tty_and_detached(rt):
    state = start(rt, "exec sleep 1000")
    result = rt.exec(state.id, ["sh", "-c", "tty; stty size"], tty=True, tty_size=(40, 120))
    lines = result.stdout.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/") and lines[1] == "40 120"
    detached = rt.exec(state.id, ["sh", "-c", "echo bg > /tmp/flag"], detach=True)
    assert detached.pid > 0 and detached.exit_code is None and detached.attachment is None
    for _ in range(100):
        if rt.exec(state.id, ["cat", "/tmp/flag"]).stdout == b"bg\n":
            break
        time.sleep(0.05)
    assert rt.exec(state.id, ["cat", "/tmp/flag"]).stdout == b"bg\n"
    rt.remove(state.id, force=True)


def test_export_of_a_running_container_skips_proc_sys_dev(rt):
    state = start(rt, "echo live > /live; exec sleep 1000")
    for _ in range(100):
        if rt.exec(state.id, ["cat", "/live"]).stdout == b"live\n":
            break
        time.sleep(0.05)
    buf = io.BytesIO()
    rt.export(state.id, buf)
    names = set(tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames())
    assert {"live", "bin/busybox", "proc", "dev", "etc/passwd"} <= names
    assert not any(n.startswith(("proc/", "sys/", "dev/")) for n in names)
    rt.remove(state.id, force=True)


def test_resizing_the_pty_of_an_attached_tty_container(rt):
    state = rt.create(ContainerSpec(image="busybox", network="none", tty=True, stdin_open=True,
                                    command=["sh", "-c", "stty size; read line; stty size"]))
    attachment = rt.start(state.id, attach="a", tty_size=(24, 80))
    try:
        seen = b""
        while b"24 80" not in seen:
            seen += attachment.read_frame()[1]
        attachment.resize(50, 132)
        attachment.send(b"\r")
        while b"50 132" not in seen:
            frame = attachment.read_frame()
            assert frame is not None, seen
            seen += frame[1]
    finally:
        attachment.close()
    assert rt.wait(state.id, timeout=30) == 0
