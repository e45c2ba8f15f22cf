"""The runtime's default seccomp profile, proved on the real kernel: the filter is loaded in
containers and in processes exec'd into them, it refuses what the profile lists even where
capabilities would not (an unprivileged user namespace), a capability that re-allows a call
lifts its entry, and `unconfined` or `--privileged` load no filter."""

from __future__ import annotations

import pytest

from pkube.runtime.seccomp import denied_syscalls, refuses_namespaces
from pkube.runtime.spec import DEFAULT_CAPABILITIES, ContainerSpec
from tests.system.test_runtime_isolation import run_sh

pytestmark = pytest.mark.root


def seccomp_mode(rt, **spec) -> str:
    code, out, err = run_sh(rt, "grep '^Seccomp:' /proc/self/status", **spec)
    assert code == 0, err
    return out.split()[1]


def test_the_filter_is_loaded_unless_unconfined_or_privileged(rt):
    assert seccomp_mode(rt) == "2"                       # SECCOMP_MODE_FILTER
    assert seccomp_mode(rt, seccomp="unconfined") == "0"
    assert seccomp_mode(rt, privileged=True) == "0"


def test_namespaces_are_refused_by_the_filter_not_only_by_capabilities(rt):
    # a user namespace needs no capability: only the filter stands in the way
    code, _, err = run_sh(rt, "unshare -U true")
    assert code != 0 and "Operation not permitted" in err
    code, _, err = run_sh(rt, "unshare -U true", seccomp="unconfined")
    assert code == 0, err


def test_a_capability_lifts_its_entries(rt):
    # CAP_SYS_ADMIN re-allows mount and unshare, as Docker's profile does
    code, _, err = run_sh(rt, "mkdir /m && mount -t tmpfs none /m && unshare -U true", cap_add=["SYS_ADMIN"])
    assert code == 0, err


def test_a_process_execed_into_the_container_gets_the_filter(rt):
    state = rt.create(ContainerSpec(image="busybox", command=["sleep", "60"], network="none"))
    try:
        rt.start(state.id)
        result = rt.exec(state.id, ["sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true"])
        assert "Seccomp:\t2" in result.stdout.decode()
        assert result.exit_code != 0 and b"Operation not permitted" in result.stderr
    finally:
        rt.remove(state.id, force=True)


def test_the_profiles_lists():
    default = denied_syscalls("default", DEFAULT_CAPABILITIES)
    for name in ("mount", "unshare", "setns", "init_module", "kexec_load", "bpf", "keyctl", "ptrace",
                 "settimeofday", "clock_settime", "reboot", "perf_event_open", "userfaultfd"):
        assert name in default
    assert "ptrace" not in denied_syscalls("default", {**DEFAULT_CAPABILITIES, "SYS_PTRACE": 19})
    assert denied_syscalls("unconfined", DEFAULT_CAPABILITIES) == []
    assert refuses_namespaces("default", DEFAULT_CAPABILITIES)
    assert not refuses_namespaces("default", {"SYS_ADMIN": 21})


def test_pdocker_security_flags(pdocker):
    status = "grep -E '^(Seccomp|CapEff):' /proc/self/status"
    default = pdocker("run", "--rm", "--network", "none", "busybox", "sh", "-c", status).stdout
    assert "Seccomp:\t2" in default and "CapEff:\t00000000a80425fb" in default
    unconfined = pdocker("run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined",
                         "busybox", "sh", "-c", "unshare -U true && echo free").stdout
    assert unconfined.strip() == "free"
    added = pdocker("run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
                    "busybox", "sh", "-c", status).stdout
    assert "CapEff:\t00000000a80435fa" in added
    assert "Seccomp:\t0" in pdocker("run", "--rm", "--network", "none", "--privileged", "busybox",
                                    "sh", "-c", status).stdout
    bad = pdocker("run", "--rm", "--security-opt", "seccomp=/tmp/profile.json", "busybox", "true", check=False)
    assert bad.returncode != 0 and "only seccomp=unconfined" in bad.stderr and "Traceback" not in bad.stderr
    read_only = pdocker("run", "--rm", "--network", "none", "--read-only", "busybox", "touch", "/x", check=False)
    assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr
