"""The informer's local cache: objects by key, with secondary indexes.

Keys are ``namespace/name`` (``name`` for cluster-scoped objects), as in
client-go. An index function maps an object to a list of index values (e.g.
pods by ``spec.nodeName``); ``by_index`` answers the objects under one value.
A lock makes it safe to read from another thread while the informer writes.
Objects handed out are the cached ones: copy before changing them.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Optional

IndexFunc = Callable[[dict], Iterable[str]]


def object_key(obj: dict) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def index_by_namespace(obj: dict) -> list[str]:
    return [obj.get("metadata", {}).get("namespace") or ""]


def index_pods_by_node(obj: dict) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


class Store:
    """Thread-safe map key -> object, with the indexes given at construction."""

    def __init__(self, indexers: Optional[dict[str, IndexFunc]] = None):
        self._lock = threading.RLock()
        self._items: dict[str, dict] = {}
        self._indexers = dict(indexers or {})
        self._indexes: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def put(self, obj: dict) -> Optional[dict]:
        """Add or replace ``obj``; the previous object under its key, or None."""
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = obj
            self._index(key, obj)
            return old

    def remove(self, key: str) -> Optional[dict]:
        """Drop ``key``; the object it held, or None."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def get(self, key: str) -> Optional[dict]:
        with self._lock:
            return self._items.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def list(self) -> list[dict]:
        with self._lock:
            return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def by_index(self, index: str, value: str) -> list[dict]:
        """Objects whose ``index`` function yields ``value``; KeyError for an unknown index."""
        with self._lock:
            keys = self._indexes[index].get(value, ())
            return [self._items[k] for k in keys]

    def index_values(self, index: str) -> list[str]:
        with self._lock:
            return [v for v, keys in self._indexes[index].items() if keys]

    def _index(self, key: str, obj: dict) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: dict) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]
