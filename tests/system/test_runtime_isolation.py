"""Each isolation property of a container, proved on the real kernel through the library."""

from __future__ import annotations

import pytest

from pkube.runtime.spec import ContainerSpec

pytestmark = pytest.mark.root

DOCKER_DEFAULT_CAPS = 0x00000000A80425FB


def run_sh(rt, script: str, **kw) -> tuple[int, str, str]:
    """Run `sh -c script` in a fresh busybox container; (exit code, stdout, stderr)."""
    state = rt.create(ContainerSpec(image="busybox", command=["sh", "-c", script], network="none", **kw))
    rt.start(state.id)
    code = rt.wait(state.id, timeout=30)
    entries = rt.logs(state.id)
    out = b"".join(e.data for e in entries if e.stream == "stdout").decode()
    err = b"".join(e.data for e in entries if e.stream == "stderr").decode()
    rt.remove(state.id)
    return code, out, err


def test_container_sees_only_its_own_processes(rt):
    code, out, _ = run_sh(rt, "ps -o pid,comm; true")
    pids = [line.split()[0] for line in out.splitlines()[1:]]
    assert code == 0 and pids[0] == "1" and len(pids) == 2, out


def test_container_sees_the_image_not_the_host_files(rt, tmp_path):
    marker = tmp_path / "host-marker"
    marker.write_text("host")
    code, out, _ = run_sh(rt, f"ls {marker} 2>&1; ls /; cat /etc/hostname")
    assert "No such file" in out
    assert "bin" in out.split() and "home" in out.split()


def test_masked_and_readonly_proc_paths(rt):
    script = ("cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls /proc/acpi | wc -l; "
              "echo x > /proc/sys/kernel/domainname && echo WROTE-SYSCTL; echo done")
    code, out, err = run_sh(rt, script)
    assert out.split() == ["0", "0", "0", "done"], out
    assert "Read-only file system" in err


def test_sys_is_readonly(rt):
    code, out, err = run_sh(rt, "touch /sys/kernel/x 2>&1; grep ' /sys ' /proc/mounts")
    assert "Read-only" in out
    assert " ro," in out


def test_hostname_defaults_to_short_id_and_can_be_set(rt):
    state = rt.create(ContainerSpec(image="busybox", command=["hostname"], network="none"))
    rt.start(state.id)
    rt.wait(state.id, timeout=30)
    assert rt.logs(state.id)[0].data.decode().strip() == state.short_id
    rt.remove(state.id)
    code, out, _ = run_sh(rt, "hostname; cat /etc/hostname; grep web1 /etc/hosts", hostname="web1")
    assert out.split()[:2] == ["web1", "web1"]


def test_capabilities_are_dockers_default_set_and_no_new_privs(rt):
    code, out, _ = run_sh(rt, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    assert int(fields["CapEff"], 16) == DOCKER_DEFAULT_CAPS
    assert int(fields["CapBnd"], 16) == DOCKER_DEFAULT_CAPS
    assert fields["NoNewPrivs"].strip() == "1"


def test_without_sys_admin_mount_is_refused(rt):
    code, out, _ = run_sh(rt, "mount -t tmpfs t /mnt 2>&1; echo rc=$?")
    assert "rc=0" not in out


def test_user_by_name_and_number(rt):
    code, out, _ = run_sh(rt, "id -u; id -g", user="nobody")
    assert out.split() == ["65534", "65534"]
    code, out, _ = run_sh(rt, "id -u; id -g; grep CapEff /proc/self/status", user="1234:77")
    assert out.split()[:2] == ["1234", "77"]
    assert out.split()[-1] == "0000000000000000"


def test_unknown_user_fails_to_start_with_a_clear_error(rt):
    from pkube.runtime.process import StartError
    state = rt.create(ContainerSpec(image="busybox", command=["true"], network="none", user="ghost"))
    with pytest.raises(StartError, match="unable to find user ghost"):
        rt.start(state.id)
    assert rt.get(state.id).exit_code == 127


def test_minimal_dev(rt):
    code, out, _ = run_sh(rt, "ls /dev; head -c 4 /dev/zero | wc -c; echo x > /dev/full; echo rc=$?")
    names = out.split()
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"):
        assert dev in names
    assert "sda" not in names and "mem" not in names
    assert "rc=1" in out


def test_none_network_has_only_loopback_up(rt):
    code, out, _ = run_sh(rt, "ls /sys/class/net; cat /sys/class/net/lo/operstate")
    assert out.split()[0] == "lo" and len(out.split()) == 2


def test_cgroup_namespace_hides_the_hosts_hierarchy(rt):
    code, out, _ = run_sh(rt, "cat /proc/self/cgroup")
    paths = {line.split(":", 2)[2] for line in out.strip().splitlines()}
    assert paths <= {"/"}, out


def test_no_file_descriptor_of_the_caller_leaks_into_the_container(rt):
    import os
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        code, out, _ = run_sh(rt, "ls /proc/self/fd")
    finally:
        os.close(r)
        os.close(w)
    assert sorted(out.split()) == ["0", "1", "2", "3"], out   # 3: ls's own directory


def test_unshare_or_setns_creates_without_a_path_and_joins_with_one():
    import os
    from pkube.runtime.namespaces import unshare_or_setns
    host = os.readlink("/proc/self/ns/uts")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare_or_setns("uts")
            fresh = os.readlink("/proc/self/ns/uts")
            unshare_or_setns("uts", f"/proc/{os.getppid()}/ns/uts")
            code = 0 if fresh != host and os.readlink("/proc/self/ns/uts") == host else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(ValueError, match="unknown namespace"):
        unshare_or_setns("time-travel")
