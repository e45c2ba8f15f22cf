"""The host mounts the kubelet makes itself: the tmpfs of memory-backed volumes.

`HostMounts` is injected into PodVolumes; unit tests replace it with a recording fake. Its
view of what is mounted is /proc/self/mountinfo, so a kubelet that restarts finds the tmpfs
it mounted before.
"""

from __future__ import annotations

import errno
import os
import re

from pkube.runtime import syscalls

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_mount_path(field: str) -> str:
    """A mount point as /proc/self/mountinfo writes it (space as \\040, ...) back to a path."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


class HostMounts:
    """tmpfs mounts on the host, seen through `mountinfo`."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo"):
        self.mountinfo = mountinfo

    def mount_tmpfs(self, path: str, size: int | None = None) -> None:
        """Mount a new tmpfs on `path` (nosuid, nodev); `size` in bytes, None for the
        kernel's default (half the RAM). Raises runtime.syscalls.SyscallError."""
        syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV,
                       f"size={size}" if size else None)

    def unmount(self, path: str) -> None:
        """Unmount `path`; a mount still in use (EBUSY) is detached lazily."""
        try:
            syscalls.umount2(path)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            syscalls.umount2(path, syscalls.MNT_DETACH)

    def mounts_under(self, path: str) -> list[str]:
        """Mount points at `path` or below it, in mount order (unmount in reverse)."""
        path = os.path.realpath(path)
        with open(self.mountinfo) as f:
            points = [unescape_mount_path(line.split()[4]) for line in f]
        return [p for p in points if p == path or p.startswith(path + "/")]

    def is_mount_point(self, path: str) -> bool:
        return os.path.realpath(path) in self.mounts_under(path)
