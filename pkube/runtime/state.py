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

from pkube.runtime import jsonlite
from pkube.runtime.records import Record


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


def new_id() -> str:
    """A new container or sandbox id: 64 lowercase hex digits."""
    return os.urandom(32).hex()


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
        return sorted(name for name in os.listdir(self.root) if self.exists(name))

    def exists(self, cid: str) -> bool:
        """True when container `cid` has a record."""
        return os.path.exists(os.path.join(self.dir(cid), "state.json"))

    # -- names: ROOT/containers/.names/<name> is a symlink to the id holding it --------------
    #
    # Docker's names index: create checks a name and resolving a name read one link instead
    # of every record (a store of 300 containers made each `pdocker run` 24 ms slower).
    # A link whose container has no record any more (a crash between removing a container
    # and releasing its name) counts as free. Written under the store's lock.

    def id_of_name(self, name: str) -> str | None:
        """The id of the container named `name`, or None. Builds the index first when the
        store predates it (taking the store's lock)."""
        if not os.path.isdir(self._names_dir()):
            with self.locked():
                self._ensure_names()
        try:
            cid = os.readlink(os.path.join(self._names_dir(), _name_file(name)))
        except OSError:
            return None
        return cid if self.exists(cid) else None

    def reserve_name(self, name: str, cid: str) -> bool:
        """Under the store's lock: record `name` as `cid`'s; False when another container
        holds it."""
        self._ensure_names()
        link = os.path.join(self._names_dir(), _name_file(name))
        try:
            os.symlink(cid, link)
            return True
        except FileExistsError:
            holder = os.readlink(link)
            if holder != cid and self.exists(holder):
                return False
            os.unlink(link)   # stale: its container is gone
            os.symlink(cid, link)
            return True

    def release_name(self, name: str, cid: str) -> None:
        """Forget `name` if `cid` holds it (takes the store's lock; idempotent)."""
        with self.locked():
            self.drop_name(name, cid)

    def drop_name(self, name: str, cid: str) -> None:
        """release_name for a caller already holding the store's lock."""
        link = os.path.join(self._names_dir(), _name_file(name))
        try:
            if os.readlink(link) == cid:
                os.unlink(link)
        except OSError:
            pass

    def _names_dir(self) -> str:
        return os.path.join(self.root, NAMES_DIR)

    def _ensure_names(self) -> None:
        """Under the store's lock: build the index from the records when it is missing
        (a store written before it existed), whole or not at all."""
        names = self._names_dir()
        if os.path.isdir(names):
            return
        tmp = f"{names}.{os.getpid()}.tmp"
        os.makedirs(tmp, exist_ok=True)
        for cid in self.ids():
            state = self.load(cid)
            if state is not None:
                try:
                    os.symlink(cid, os.path.join(tmp, _name_file(state.name)))
                except FileExistsError:
                    pass
        os.rename(tmp, names)

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


NAMES_DIR = ".names"
PLAIN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _name_file(name: str) -> str:
    """The index's file name for a container name: the name itself when it is a plain
    Docker name, else "%" and its UTF-8 in hex (no "/", no dot files, no collisions)."""
    if name and name[0] != "." and all(c in PLAIN_NAME_CHARS for c in name):
        return name
    return "%" + name.encode().hex()


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
