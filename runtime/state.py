"""Container lifecycle: an explicit enum with guarded transitions, persisted atomically.

Each container's record lives in ROOT/containers/<id>/state.json (written to a temp file and
renamed). Transitions: created -> running -> exited -> running (restart) ...; removal is
allowed from any state but running. An illegal transition raises `IllegalTransition`.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

from runtime.records import Record


class Status(str, enum.Enum):
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
        return self.status is Status.RUNNING

    def transition(self, to: Status) -> None:
        """Guard then move to `to`; raises IllegalTransition."""
        if to not in ALLOWED[self.status]:
            raise IllegalTransition(f"container {self.short_id} is {self.status.value}, cannot become {to.value}")
        self.status = to

    def to_json(self) -> str:
        data = self.to_dict()
        data["status"] = self.status.value
        return json.dumps(data)   # one line: with `indent`, json encodes in Python, not C (~3 ms a save)

    @classmethod
    def from_json(cls, text: str) -> "ContainerState":
        data = json.loads(text)
        data["status"] = Status(data["status"])
        known = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in known})


class StateStore:
    """ROOT/containers: one directory per container id, holding state.json and a lock."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())

    def load(self, cid: str) -> ContainerState | None:
        """The record, or None when the container does not exist (or is being removed)."""
        try:
            return ContainerState.from_json((self.dir(cid) / "state.json").read_text())
        except FileNotFoundError:
            return None

    def save(self, state: ContainerState) -> None:
        """Atomically replace the record (temp file + rename)."""
        path = self.dir(state.id) / "state.json"
        tmp = path.with_name(f"state.json.{os.getpid()}.tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, path)

    @contextmanager
    def locked(self, cid: str | None = None) -> Iterator[None]:
        """Hold an exclusive flock on one container's directory (or on the store's, when cid
        is None) while a transition reads, acts and persists. Raises FileNotFoundError when
        the container directory is gone."""
        path = self.dir(cid) if cid else self.root
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
