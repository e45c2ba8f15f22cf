"""Container lifecycle: an explicit enum with guarded transitions, persisted atomically.

Each container's record lives in ROOT/containers/<id>/state.json (written to a temp file and
renamed). Transitions: created -> running -> exited -> running (restart) ...; removal is
allowed from any state but running. An illegal transition raises `IllegalTransition`.
"""

from __future__ import annotations

import datetime as dt
import enum
import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Iterator


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
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class ContainerState:
    """The persisted record of one container (or sandbox, when `kind` is "sandbox").

    `pid`/`pid_start` identify the container's process (start time from /proc/<pid>/stat
    defeats pid reuse); `shim_pid`/`shim_start` its supervisor. `process` is the resolved
    argv/env/workdir/user; `spec` the caller's spec as a dict; `endpoint` the network
    attachment (ip, prefixlen, gateway, mac) or None.
    """

    id: str
    name: str
    image: str
    image_id: str
    kind: str = "container"
    status: Status = Status.CREATED
    created: str = field(default_factory=now_iso)
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    pid: int = 0
    pid_start: int = 0
    shim_pid: int = 0
    shim_start: int = 0
    restart_count: int = 0
    process: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    layer_dirs: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    endpoint: dict | None = None
    cgroup: str | None = None

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
        data = asdict(self)
        data["status"] = self.status.value
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ContainerState":
        data = json.loads(text)
        data["status"] = Status(data["status"])
        known = cls.__dataclass_fields__
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
