"""Keep cgroup moves cheap while a container starts, on hosts with cgroup v1 hierarchies.

Why: moving a process into a cgroup (a write to `cgroup.procs`) takes the kernel's
`cgroup_threadgroup_rwsem` for writing. That per-CPU rwsem keeps its readers (every fork and
exit on the host) on a fast path, and a writer first has to switch them off it: an RCU grace
period, 5-15 ms here, during which the writer sleeps. The switch back happens one grace period
after the last writer left, so a move that comes within that window costs microseconds
(measured here: 5-15 ms for a move after 20 ms or more of quiet, 0.02 ms after 12 ms or less).

A `pdocker run` on cgroup v1 must move its container's process into the container's cgroups
before it execs, so without help it waits one grace period (runc waits the same). With
`keep_migrations_fast()` called first thing in the process, a background thread pays that grace
period while the interpreter is still importing and parsing, then rewrites this process into the
cgroup it is already in (a move that changes nothing) every few milliseconds, so the window
stays open until the container's move has happened. The cost: a few dozen tiny writes, and the
host's forks on the rwsem's slower reader path for at most `seconds` (what the kernel's
`favordynmods` cgroup mount option does permanently).

On a v2-only host there is nothing to do: the shim creates the container's process inside its
cgroup (clone3 CLONE_INTO_CGROUP), nothing is moved.

Only `sys`, `os`, `time` and `_thread` are used: this runs before pdocker's other imports.
"""

from __future__ import annotations

import _thread
import os
import time

CGROUP_MOUNT = "/sys/fs/cgroup"
PERIOD = 0.004   # seconds between rewrites; the kernel's window is one grace period (>= ~10 ms)


def own_v1_procs_file(proc_cgroup: str = "/proc/self/cgroup", mount: str = CGROUP_MOUNT) -> str | None:
    """The `cgroup.procs` file of this process's cgroup in a mounted v1 hierarchy, or None
    (no v1 hierarchy: a v2-only host, or an unreadable /proc)."""
    if os.path.exists(os.path.join(mount, "cgroup.controllers")):
        return None   # cgroup2 at the top: v2-only
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers or "," in controllers:   # the v2 line, or co-mounted controllers
            continue
        name = controllers[len("name="):] if controllers.startswith("name=") else controllers
        procs = os.path.join(mount, name, path.lstrip("/"), "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


def keep_migrations_fast(seconds: float = 0.2, procs_file: str | None = None) -> bool:
    """Start the background rewrites for `seconds` (see the module's docstring); returns at
    once, True when they started. Never raises: without a writable v1 cgroup it does nothing.
    The thread is a plain `_thread` thread: it dies with the process (os._exit included)."""
    procs_file = procs_file or own_v1_procs_file()
    if procs_file is None:
        return False
    try:
        fd = os.open(procs_file, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    _thread.start_new_thread(_rewrite_self, (fd, time.monotonic() + seconds))
    return True


def _rewrite_self(fd: int, deadline: float) -> None:
    """Write "0" (this process) into the cgroup it is in until `deadline`; stop at an error."""
    try:
        while time.monotonic() < deadline:
            os.write(fd, b"0")
            time.sleep(PERIOD)
    except OSError:
        pass
    finally:
        os.close(fd)
