"""A Storage that times every call of the one under it (etcd_request_duration_seconds).

``MeasuredStorage(etcd, observe)`` sits between the watch cache (CachedStorage) and
EtcdStorage: get, list, create, update (guaranteed_update), delete, count and compact are
timed, whether they succeed or fail, and reported as ``observe(operation, key, seconds)``.
Watches are not timed (they last). Anything else (watch_batches, key_counts...) is the
wrapped store's.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from pkube.apiserver.storage.interface import ListResult, Preconditions, Storage, UpdateFn

Observe = Callable[[str, str, float], None]


class MeasuredStorage(Storage):
    """See the module docstring."""

    def __init__(self, storage, observe: Observe):
        self.storage, self._observe = storage, observe

    def __getattr__(self, name: str):
        return getattr(self.storage, name)

    async def get(self, key: str) -> dict:
        started = time.perf_counter()
        try:
            return await self.storage.get(key)
        finally:
            self._observe("get", key, time.perf_counter() - started)

    async def list(self, prefix: str, revision: int = 0, limit: int = 0,
                   continue_token: Optional[str] = None) -> ListResult:
        started = time.perf_counter()
        try:
            return await self.storage.list(prefix, revision, limit, continue_token)
        finally:
            self._observe("list", prefix, time.perf_counter() - started)

    async def list_raw(self, prefix: str, revision: int = 0, limit: int = 0,
                       continue_token: Optional[str] = None) -> ListResult:
        started = time.perf_counter()
        try:
            return await self.storage.list_raw(prefix, revision, limit, continue_token)
        finally:
            self._observe("list", prefix, time.perf_counter() - started)

    async def create(self, key: str, obj: dict) -> dict:
        started = time.perf_counter()
        try:
            return await self.storage.create(key, obj)
        finally:
            self._observe("create", key, time.perf_counter() - started)

    async def guaranteed_update(self, key: str, fn: UpdateFn, preconditions: Optional[Preconditions] = None,
                                *suggestion) -> dict:
        """``suggestion``: what CachedStorage passes on to EtcdStorage (its newest known state)."""
        started = time.perf_counter()
        try:
            return await self.storage.guaranteed_update(key, fn, preconditions, *suggestion)
        finally:
            self._observe("update", key, time.perf_counter() - started)

    async def delete(self, key: str, preconditions: Optional[Preconditions] = None, *suggestion) -> dict:
        """``suggestion``: what CachedStorage passes on to EtcdStorage (its newest known state)."""
        started = time.perf_counter()
        try:
            return await self.storage.delete(key, preconditions, *suggestion)
        finally:
            self._observe("delete", key, time.perf_counter() - started)

    def known(self, key: str, *suggestion):
        """No round trip, nothing to measure; ``suggestion`` as for ``delete``."""
        return self.storage.known(key, *suggestion)

    def watch(self, prefix: str, revision: int):
        return self.storage.watch(prefix, revision)

    async def current_revision(self) -> int:
        started = time.perf_counter()
        try:
            return await self.storage.current_revision()
        finally:
            self._observe("getCurrentResourceVersion", "", time.perf_counter() - started)

    async def compact(self, revision: int) -> None:
        started = time.perf_counter()
        try:
            await self.storage.compact(revision)
        finally:
            self._observe("compact", "", time.perf_counter() - started)

    async def close(self) -> None:
        await self.storage.close()
