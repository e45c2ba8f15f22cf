"""Watch events as the store produces them, and their wire form.

Every event the store yields is a ``StoredEvent`` (a ``WatchEvent``). Events
coming from the watch cache are shared by all watchers: neither the event nor
its ``object`` may be mutated — deep-copy first (``copy.deepcopy`` or
``loads(dumps(...))``) when a change is needed.

``wire_line(event)`` gives the Kubernetes watch line
``{"type":...,"object":...}\\n`` and encodes it once per event, so a hundred
HTTP watchers of one event cost one ``dumps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pkube.api.jsonvalue import dumps, go_escaped, loads
from pkube.apiserver.storage.interface import WatchEvent

_WIRE = "_wire_line"
_PREV = "_prev_object"


@dataclass(frozen=True)
class StoredEvent(WatchEvent):
    """A WatchEvent that also knows the object's state before the change.

    ``prev_object`` (decoded on first use, then shared) is the previous state
    for MODIFIED events, None for ADDED; for DELETED it is ``object`` itself.
    It lets a watcher with a selector turn a MODIFIED that leaves (or enters)
    its selection into DELETED (or ADDED), as Kubernetes does. ``value`` is
    the stored JSON of ``object`` (without resourceVersion) for ADDED and
    MODIFIED events from etcd, None otherwise.
    """

    prev_value: Optional[bytes] = field(default=None, repr=False, compare=False)
    prev_revision: int = field(default=0, repr=False, compare=False)
    value: Optional[bytes] = field(default=None, repr=False, compare=False)  # plain JSON of object

    @property
    def prev_object(self) -> Optional[dict]:
        if self.type == "DELETED":
            return self.object
        if self.prev_value is None:
            return None
        cached = self.__dict__.get(_PREV)
        if cached is None:
            cached = loads(self.prev_value)
            cached.setdefault("metadata", {})["resourceVersion"] = str(self.prev_revision)
            object.__setattr__(self, _PREV, cached)
        return cached


def wire_line(event: WatchEvent) -> bytes:
    """``{"type":"ADDED","object":{...}}`` + newline, encoded once per event."""
    line = event.__dict__.get(_WIRE)
    if line is None:
        line = b'{"type":"%s","object":%s}\n' % (event.type.encode(), go_escaped(dumps(event.object)))
        object.__setattr__(event, _WIRE, line)
    return line
