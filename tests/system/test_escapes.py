"""A container stays inside, proved on the real kernel (issue 11's containment list): it does
not reach the host's disk through a device node it makes, load a kernel module, change the
host's hostname or clock, write /proc/sys, or gain root through a setuid binary under
no_new_privs. (Processes, mounts and /proc paths: test_runtime_isolation.py; namespaces and
the seccomp filter: test_seccomp.py; crafted image layers: tests/unit/test_layers.py.)"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from pkube.runtime.spec import Mount
from tests.system.test_runtime_isolation import run_sh

pytestmark = pytest.mark.root


def root_block_device() -> tuple[int, int]:
    st = os.stat("/")
    return os.major(st.st_dev), os.minor(st.st_dev)


def test_a_device_node_made_inside_does_not_open_the_hosts_disk(rt):
    major, minor = root_block_device()
    code, out, err = run_sh(rt, f"mknod /tmp/disk b {major} {minor} && head -c 512 /tmp/disk | wc -c")
    assert "Operation not permitted" in err and out.strip() == "0"


def test_no_kernel_module_can_be_loaded(rt):
    code, _, err = run_sh(rt, "echo junk > /m.ko; insmod /m.ko")
    assert code != 0 and "Operation not permitted" in err


def test_the_hosts_hostname_and_clock_stay_as_they_are(rt):
    host_name = socket.gethostname()
    before = time.time()
    _, _, err = run_sh(rt, "hostname evil; date -s 2000-01-01")    # busybox date exits 0 regardless
    assert "sethostname: Operation not permitted" in err and "can't set date: Operation not permitted" in err
    assert socket.gethostname() == host_name and time.time() >= before


def test_proc_sys_cannot_be_written(rt):
    code, _, err = run_sh(rt, "echo evil > /proc/sys/kernel/hostname")
    assert code != 0 and "Read-only file system" in err


EUID_PROGRAM = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"%d\\n\", geteuid()); return 0; }\n"


@pytest.fixture
def setuid_program(tmp_path):
    """A directory holding a static setuid-root program that prints its effective user id
    (busybox drops a setuid bit itself, so it cannot show one)."""
    directory = tmp_path / "suid"
    directory.mkdir()
    source = tmp_path / "euid.c"
    source.write_text(EUID_PROGRAM)
    target = directory / "euid"
    subprocess.run([shutil.which("cc") or "gcc", "-static", "-O2", "-o", str(target), str(source)], check=True)
    os.chmod(target, 0o4755)
    return directory


def test_a_setuid_binary_raises_no_privilege_under_no_new_privs(rt, setuid_program):
    mount = Mount(str(setuid_program), "/suid", readonly=True)
    _, confined, err = run_sh(rt, "/suid/euid", user="1000", mounts=[mount])
    assert confined.strip() == "1000", err          # the effective user stays 1000
    # the same program without no_new_privs does become root: the check above can fail
    _, free, err = run_sh(rt, "/suid/euid", user="1000", mounts=[mount], no_new_privileges=False)
    assert free.strip() == "0", err
