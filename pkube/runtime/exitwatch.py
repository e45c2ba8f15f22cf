"""Exit events: which containers exited, as the kernel tells it (inotify), without polling.

A container's shim records its exit by renaming `exit.tmp` to `exit` in the container's
directory (pkube/runtime/shim.c, write_exit). `ExitWatcher` watches the directories of the
containers a caller cares about and reports the ids whose `exit` file appeared. Its file
descriptor can be handed to an event loop (`loop.add_reader(watcher.fileno(), ...)`).

A shim killed before it could write the file sends no event: callers that must notice that
too refresh the container (Runtime.get) on their own schedule.
"""

from __future__ import annotations

import os

from pkube.runtime.inotify import IN_CLOSE_WRITE, IN_IGNORED, IN_MOVED_TO, Inotify

EXIT_FILE = "exit"


class ExitWatcher:
    """Exit events of chosen containers of one runtime store. Not thread-safe: one owner."""

    def __init__(self, store_dir: str):
        self.store_dir = store_dir
        self._inotify = Inotify()
        self._ids_by_wd: dict[int, str] = {}
        self._wd_by_id: dict[str, int] = {}

    def fileno(self) -> int:
        return self._inotify.fileno()

    def watch(self, cid: str) -> bool:
        """Report `cid`'s exits from now on; False when its directory is gone. An exit that
        happened before the call is not reported: check the container after watching."""
        if cid in self._wd_by_id:
            return True
        try:
            wd = self._inotify.add_watch(os.path.join(self.store_dir, cid), IN_MOVED_TO | IN_CLOSE_WRITE)
        except OSError:
            return False
        self._ids_by_wd[wd] = cid
        self._wd_by_id[cid] = wd
        return True

    def unwatch(self, cid: str) -> None:
        """Stop reporting `cid`; a no-op when it is not watched."""
        wd = self._wd_by_id.pop(cid, None)
        if wd is not None:
            self._ids_by_wd.pop(wd, None)
            self._inotify.rm_watch(wd)

    def read(self) -> set[str]:
        """The ids whose exit file appeared since the last read (empty when none): never blocks."""
        exited = set()
        for wd, mask, name in self._inotify.read():
            if mask & IN_IGNORED:   # the directory was removed
                cid = self._ids_by_wd.pop(wd, None)
                if cid is not None:
                    self._wd_by_id.pop(cid, None)
            elif name == EXIT_FILE and wd in self._ids_by_wd:
                exited.add(self._ids_by_wd[wd])
        return exited

    def close(self) -> None:
        self._inotify.close()
        self._ids_by_wd.clear()
        self._wd_by_id.clear()
