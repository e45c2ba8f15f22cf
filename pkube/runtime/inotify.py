"""inotify(7) through libc: watch directories, read what happened, never block.

One small class over three syscalls (ctypes; Python 3.11 has no binding). Its file
descriptor can be handed to an event loop (`loop.add_reader(watch.fileno(), ...)`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENT_HEADER = struct.Struct("iIII")   # wd, mask, cookie, len


class Inotify:
    """An inotify instance. Not thread-safe: one owner."""

    def __init__(self):
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_init1: {os.strerror(errno)}")

    def fileno(self) -> int:
        return self._fd

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor of `path`; raises OSError (ENOENT when it is gone)."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_add_watch {path}: {os.strerror(errno)}")
        return wd

    def rm_watch(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self._fd, wd)

    def read(self) -> list[tuple[int, int, str]]:
        """(wd, mask, name) of every event queued so far; [] when none."""
        events = []
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return events
            events.extend(parse_events(data))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """The (wd, mask, name) records of one read(2) of an inotify descriptor."""
    events, offset = [], 0
    while offset + EVENT_HEADER.size <= len(data):
        wd, mask, _cookie, length = EVENT_HEADER.unpack_from(data, offset)
        start = offset + EVENT_HEADER.size
        events.append((wd, mask, os.fsdecode(data[start:start + length].rstrip(b"\0"))))
        offset = start + length
    return events
