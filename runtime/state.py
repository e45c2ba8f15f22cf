"""Container lifecycle: an explicit set of statuses with guarded transitions, persisted
atomically.

Each container's record lives in ROOT/containers/<id>/state.json (written to a temp file and
renamed). Transitions: created -> running -> exited -> running (restart) ...; removal is
allowed from any state but running. An illegal transition raises `IllegalTransition`.

This module is on the path of every `pdocker run`: it imports only cheap C modules and the
runtime's lean ones (no enum, json, pathlib, contextlib; docs/runtime.md, "Where a pdocker
run spends its time"). Paths are str.
"""

from __future__ import annotations

import fcntl
import os
import time

from runtime import jsonlite
from runtime.records import Record


class Status:
    """A container's lifecycle status: plain str constants (an Enum would cost every pdocker
    command `import enum`). `ContainerState.status` is one of these strings; compare with ==."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


ALLOWED = {
    Status.CREATED: {Status.RUNNING, Status.EXITED},
    Status.RUNNING: {Status.EXITED},
    Status.EXITED: {Status.RUNNING},
}


class IllegalTransition(Exception):
    """A lifecycle operation does not fit the container's current status."""


def now_iso() -> str:
    """Now, UTC, RFC 3339 with nanoseconds like Docker prints."""
    ns = time.time_ns()   # (datetime would cost every pdocker command an import)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ns // 1_000_000_000)) + f"{ns // 1000 % 1_000_000:06d}000Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


class ContainerState(Record):
    """The persisted record of one container (or sandbox, when `kind` is "sandbox").

    `pid`/`pid_start` identify the container's process (start time from /proc/<pid>/stat
    defeats pid reuse); `shim_pid`/`shim_start` its supervisor. `process` is the resolved
    argv/env/workdir/user; `spec` the caller's spec as a dict; `endpoint` the network
    attachment (ip, prefixlen, gateway, mac) or None.
    """

    FIELDS = (
        "id", "name", "image", "image_id",               # str
        ("kind", "container"),
        ("status", Status.CREATED),
        ("created", Record.factory(now_iso)),
        ("started_at", ZERO_TIME), ("finished_at", ZERO_TIME),
        ("exit_code", 0), ("oom_killed", False), ("error", ""),
        ("pid", 0), ("pid_start", 0), ("shim_pid", 0), ("shim_start", 0),
        ("restart_count", 0),
        ("process", {}), ("spec", {}),                    # dict
        ("layer_dirs", []),                               # list[str]
        ("labels", {}),                                   # dict[str, str]
        ("endpoint", None),                               # dict | None
        ("cgroup", None),                                 # str | None
    )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING

    def transition(self, to: str) -> None:
        """Guard then move to `to` (a Status constant); raises IllegalTransition."""
        if to not in ALLOWED[self.status]:
            raise IllegalTransition(f"container {self.short_id} is {self.status}, cannot become {to}")
        self.status = to

    def to_json(self) -> str:
        """One line of compact JSON (the keys of FIELDS)."""
        return jsonlite.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> "ContainerState":
        """The record in `text`; keys it does not know are ignored. Raises ValueError on a
        document that is not JSON, or whose status is not a Status."""
        data = jsonlite.loads(text)
        if data.get("status") not in ALLOWED:
            raise ValueError(f"unknown container status {data.get('status')!r}")
        known = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in known})


class StateStore:
    """ROOT/containers: one directory per container id, holding state.json and a lock.

    `root` may be a str or any os.PathLike; `.root` and every path returned are str.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def ids(self) -> list[str]:
        """Ids of the containers that have a record, sorted."""
        return sorted(name for name in os.listdir(self.root)
                      if os.path.exists(os.path.join(self.root, name, "state.json")))

    def load(self, cid: str) -> ContainerState | None:
        """The record, or None when the container does not exist (or is being removed)."""
        try:
            with open(os.path.join(self.dir(cid), "state.json"), "rb") as f:
                return ContainerState.from_json(f.read())
        except FileNotFoundError:
            return None

    def save(self, state: ContainerState) -> None:
        """Atomically replace the record (temp file + rename)."""
        path = os.path.join(self.dir(state.id), "state.json")
        tmp = os.path.join(self.dir(state.id), f"state.json.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(state.to_json())
        os.replace(tmp, path)

    def locked(self, cid: str | None = None) -> "DirectoryLock":
        """A context manager holding an exclusive flock on one container's directory (or on
        the store's, when cid is None) while a transition reads, acts and persists. Entering
        it raises FileNotFoundError when the container directory is gone."""
        return DirectoryLock(self.dir(cid) if cid else self.root)


class DirectoryLock:
    """An exclusive flock on a directory, held from __enter__ to __exit__ (blocking).

    Not reentrant; one instance is entered once."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc) -> None:
        fd, self.fd = self.fd, -1
        os.close(fd)
