"""The watch cache's ring of recent events and the wire form of events."""

from __future__ import annotations

from pkube.apiserver.storage.cacher import EventRing
from pkube.apiserver.storage.events import StoredEvent, wire_line


def event(revision: int) -> StoredEvent:
    return StoredEvent("ADDED", {"metadata": {"name": f"p{revision}"}}, revision, f"/registry/pods/ns/p{revision}")


def test_ring_keeps_the_newest_and_evicts_in_order():
    ring = EventRing(3)
    evicted = [ring.append(event(r)) for r in (10, 20, 30, 40, 50)]
    assert [e.revision if e else None for e in evicted] == [None, None, None, 10, 20]
    assert (ring.start, ring.end) == (2, 5)
    assert [ring[s].revision for s in range(ring.start, ring.end)] == [30, 40, 50]


def test_first_after_finds_the_resume_point_after_wrap_around():
    ring = EventRing(4)
    for r in range(1, 11):
        ring.append(event(r * 10))
    assert ring[ring.first_after(70)].revision == 80
    assert ring[ring.first_after(75)].revision == 80
    assert ring.first_after(100) == ring.end
    assert ring.first_after(0) == ring.start


def test_wire_line_is_the_kubernetes_watch_line_and_prev_object_decodes_lazily():
    modified = StoredEvent("MODIFIED", {"metadata": {"name": "a", "resourceVersion": "7"}}, 7,
                           "/registry/pods/ns/a", b'{"metadata":{"name":"a"},"spec":{}}', 5)
    assert wire_line(modified) == \
        b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}\n'
    assert modified.prev_object == {"metadata": {"name": "a", "resourceVersion": "5"}, "spec": {}}
    assert modified.prev_object is modified.prev_object
    assert event(1).prev_object is None
    deleted = StoredEvent("DELETED", {"metadata": {"name": "a"}}, 9, "/registry/pods/ns/a")
    assert deleted.prev_object is deleted.object
