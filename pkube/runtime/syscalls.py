"""The runtime's few direct syscalls, through ctypes (Python 3.11 has no os.unshare/os.setns).

Every failure raises `SyscallError` (an OSError) whose message names the operation and the
path, e.g. `mount overlay on /x: Permission denied`. The container recipe itself runs in the
C shim (pkube/runtime/shim.c); these are for the Python side: temporary mounts of a stopped
container's rootfs and joining namespaces in-process.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ctypes

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000


class SyscallError(OSError):
    """A syscall failed; str() reads `<operation> <path>: <strerror>`."""

    def __init__(self, errno: int, operation: str):
        super().__init__(errno, f"{operation}: {os.strerror(errno)}")
        self.operation = operation

    def __str__(self) -> str:
        return self.strerror


def _libc() -> ctypes.CDLL:
    """The C library. By its glibc soname first: ctypes.util.find_library runs
    subprocesses (ldconfig, gcc) and costs a few milliseconds of every start. (ctypes itself
    is imported here, on the first syscall: most pdocker commands make none.)"""
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:   # not glibc (musl, say)
        from ctypes.util import find_library
        return ctypes.CDLL(find_library("c"), use_errno=True)


def _check(result: int, operation: str) -> None:
    if result != 0:
        import ctypes
        raise SyscallError(ctypes.get_errno(), operation)


def _b(value: str | os.PathLike | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str | os.PathLike, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2). The error names the filesystem type (or source) and the target."""
    import ctypes
    result = _libc().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(result, f"mount {fstype or source} on {os.fspath(target)}")


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc().umount2(_b(target), flags), f"umount {os.fspath(target)}")


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread's process."""
    _check(_libc().unshare(flags), f"unshare {flags:#x}")


def setns(path: str | os.PathLike, nstype: int = 0) -> None:
    """Join the namespace at `path` (e.g. /proc/PID/ns/net)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc().setns(fd, nstype), f"setns {os.fspath(path)}")
    finally:
        os.close(fd)
