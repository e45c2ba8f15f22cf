"""The watch cache's ring of recent events and the wire form of events."""

from __future__ import annotations

import weakref

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


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_ring_keeps_the_last_75_seconds_and_lets_older_events_go():
    clock = Clock()
    ring = EventRing(10_000, clock=clock)
    first = event(1)
    alive = weakref.ref(first)
    ring.append(first)
    del first
    for r in range(2, 5_001):       # 5,000 events at 20 a second: 250 s of writes
        clock.now += 0.05
        ring.append(event(r))
        assert len(ring) <= 75 * 20 + 1
    assert len(ring) >= 75 * 20     # the last 75 s are all there
    assert ring[ring.start].revision >= 5_000 - 75 * 20
    assert alive() is None          # a dropped event is not held anywhere


def test_a_quiet_ring_keeps_its_last_events_however_old():
    clock = Clock()
    ring = EventRing(10_000, keep=100, clock=clock)
    for r in range(1, 301):         # one event an hour
        clock.now += 3600
        ring.append(event(r))
    assert len(ring) == 100 and ring[ring.start].revision == 201


def test_the_capacity_bounds_a_ring_whatever_the_rate():
    ring = EventRing(50, clock=Clock())     # the clock stands still: every event is fresh
    for r in range(1, 1_001):
        ring.append(event(r))
    assert len(ring) == 50 and ring[ring.start].revision == 951
