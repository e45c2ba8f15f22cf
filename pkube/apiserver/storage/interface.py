"""The narrow store contract every apiserver write and read goes through.

Objects are JSON-able dicts (Kubernetes objects). The store stamps
``metadata.resourceVersion`` (the etcd mod_revision, as a string) on every
object it returns and strips it from every object it is given: the version is
never persisted inside the value.

Errors are a closed set (``KeyExists``, ``NotFound``, ``Conflict``,
``Compacted``); everything else is a bug or an unavailable backend
(``StorageUnavailable``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Literal, Optional


class StorageError(Exception):
    """Base of the closed set of store errors."""

    def __init__(self, key: str, message: str = ""):
        super().__init__(message or f"{type(self).__name__}: {key}")
        self.key = key


class KeyExists(StorageError):
    """create() found the key already present."""


class NotFound(StorageError):
    """The key does not exist."""


class Conflict(StorageError):
    """A precondition (uid or resourceVersion) did not hold.

    ``current`` carries the object as it is now, when known.
    """

    def __init__(self, key: str, message: str = "", current: Optional[dict] = None):
        super().__init__(key, message)
        self.current = current


class Compacted(StorageError):
    """The requested revision has been compacted away (HTTP 410 Gone)."""

    def __init__(self, key: str, revision: int, compact_revision: int):
        super().__init__(key, f"revision {revision} compacted (oldest kept {compact_revision})")
        self.revision = revision
        self.compact_revision = compact_revision


class StorageUnavailable(StorageError):
    """The backend cannot be reached; the request may be retried."""


class SpaceExceeded(StorageUnavailable):
    """etcd's space quota is reached (its NOSPACE alarm): writes are refused until it is
    compacted, defragmented and the alarm disarmed (docs/operations.md); reads go on."""


@dataclass(frozen=True)
class Preconditions:
    """Must hold on the stored object for a delete or update to proceed."""

    uid: Optional[str] = None
    resource_version: Optional[str] = None

    def check(self, key: str, obj: dict) -> None:
        """Raise Conflict when ``obj`` does not satisfy these preconditions."""
        meta = obj.get("metadata", {})
        if self.uid is not None and meta.get("uid") != self.uid:
            raise Conflict(key, f"Precondition failed: UID in precondition: {self.uid}, "
                                f"UID in object meta: {meta.get('uid')}", obj)
        if self.resource_version is not None and meta.get("resourceVersion") != self.resource_version:
            raise Conflict(key, "Precondition failed: ResourceVersion in precondition: "
                                f"{self.resource_version}, ResourceVersion in object meta: "
                                f"{meta.get('resourceVersion')}", obj)


@dataclass
class ListResult:
    """One page of a list.

    ``revision`` is the store revision the page was read at; ``continue_token``
    is None on the last page, else an opaque string for the next call, and
    ``remaining`` counts the items after this page (None when unknown).
    """

    items: list[dict]
    revision: int
    continue_token: Optional[str] = None
    remaining: Optional[int] = None


EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class WatchEvent:
    """One change. For DELETED, ``object`` is the last state before deletion,
    stamped with the deletion's revision."""

    type: EventType
    object: dict
    revision: int
    key: str = field(default="")


UpdateFn = Callable[[dict], dict]


class Storage(abc.ABC):
    """The store interface (DESIGN.md §4). All methods are coroutines."""

    @abc.abstractmethod
    async def get(self, key: str) -> dict:
        """Return the object at ``key``; raise NotFound."""

    @abc.abstractmethod
    async def list(self, prefix: str, revision: int = 0, limit: int = 0,
                   continue_token: Optional[str] = None) -> ListResult:
        """List the objects under ``prefix`` (a key ending in '/').

        revision 0 reads the newest state; otherwise it reads at that exact
        revision (Compacted if it is gone). limit 0 means everything. A
        continue_token from an earlier page resumes at that page's revision.
        """

    @abc.abstractmethod
    async def create(self, key: str, obj: dict) -> dict:
        """Store ``obj`` only if ``key`` does not exist; raise KeyExists.

        Returns the stored object stamped with its resourceVersion."""

    @abc.abstractmethod
    async def guaranteed_update(self, key: str, fn: UpdateFn,
                                preconditions: Optional[Preconditions] = None) -> dict:
        """Read-modify-write ``key`` with a pure ``fn`` until it sticks.

        ``fn`` gets a private copy of the current object (resourceVersion
        stamped) and returns the desired object; it may raise to abort (the
        exception propagates, nothing is written). When the desired object
        equals the current one, nothing is written and the current object is
        returned. On a compare-and-swap conflict the key is re-read and ``fn``
        is called again. If the object returned by ``fn`` carries a
        resourceVersion different from the one it was given, the update is a
        client's optimistic write that lost: raise Conflict without retrying.
        Raises NotFound when the key does not exist.
        """

    @abc.abstractmethod
    async def delete(self, key: str, preconditions: Optional[Preconditions] = None) -> dict:
        """Delete ``key`` if ``preconditions`` hold; return the deleted object
        stamped with the deletion revision. Raises NotFound, Conflict."""

    def known(self, key: str) -> Optional[dict]:
        """The newest state of ``key`` this store knows without a read (what it last wrote or
        watched), or None. Possibly stale: only for a write conditioned on its resourceVersion,
        which fails if the key moved on."""
        return None

    @abc.abstractmethod
    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Stream every change under ``prefix`` with revision > ``revision``,
        in order, exactly once. Raises Compacted (on first iteration) when
        ``revision`` is older than the compacted history."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The store's newest revision."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Drop history older than ``revision``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
