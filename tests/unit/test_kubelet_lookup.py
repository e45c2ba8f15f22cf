"""Finding a pod's runtime records by the kubelet's labels (kubelet.lookup), on a fake
runtime that filters by labels as Runtime.list does."""

from __future__ import annotations

from dataclasses import dataclass, field

from pkube.kubelet import lookup
from pkube.kubelet.lookup import CONTAINER_ATTEMPT, CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID


@dataclass
class Record:
    id: str
    kind: str = "container"
    labels: dict = field(default_factory=dict)
    created: str = "2026-01-01T00:00:00.000000000Z"
    running: bool = True
    name: str = ""


class FakeRuntime:
    def __init__(self, records):
        self.records = records

    def list(self, all=False, labels=None, kind="container"):
        out = [r for r in self.records if r.kind == kind and (all or r.running)
               and all_match(r.labels, labels or {})]
        return sorted(out, key=lambda r: r.created, reverse=True)


def all_match(have: dict, want: dict) -> bool:
    return all(k in have and (v is None or have[k] == v) for k, v in want.items())


def pod(uid="u1", name="web", ns="default"):
    return {POD_UID: uid, POD_NAME: name, POD_NAMESPACE: ns}


def container(cid, attempt, name="main", running=False, created="2026-01-01T00:00:00.000000000Z", **pod_args):
    return Record(cid, labels={**pod(**pod_args), CONTAINER_NAME: name, CONTAINER_ATTEMPT: str(attempt)},
                  running=running, created=created)


def sandbox(sid, created="2026-01-01T00:00:00.000000000Z", running=True, **pod_args):
    return Record(sid, kind="sandbox", labels=pod(**pod_args), created=created, running=running)


def test_the_current_instance_is_the_highest_attempt_and_previous_the_one_before():
    rt = FakeRuntime([sandbox("s1"), container("c0", 0), container("c2", 2, running=True),
                      container("c1", 1), container("c10", 10, name="other")])
    assert lookup.find_container(rt, "default", "web", "main").id == "c2"
    assert lookup.find_container(rt, "default", "web", "main", previous=True).id == "c1"


def test_attempts_compare_as_numbers_not_text():
    rt = FakeRuntime([sandbox("s1"), container("c9", 9), container("c10", 10)])
    assert lookup.find_container(rt, "default", "web", "main").id == "c10"


def test_no_previous_instance_and_unknown_names_are_none():
    rt = FakeRuntime([sandbox("s1"), container("c0", 0, running=True)])
    assert lookup.find_container(rt, "default", "web", "main", previous=True) is None
    assert lookup.find_container(rt, "default", "web", "sidecar") is None
    assert lookup.find_container(rt, "other", "web", "main") is None
    assert lookup.pod_sandbox(rt, "default", "db") is None


def test_a_pod_recreated_under_the_same_name_shows_only_the_new_pods_containers():
    rt = FakeRuntime([
        sandbox("old-sandbox", uid="old", created="2026-01-01T00:00:00.000000000Z", running=False),
        container("old-c", 5, uid="old"),
        sandbox("new-sandbox", uid="new", created="2026-01-02T00:00:00.000000000Z"),
        container("new-c", 0, uid="new", running=True),
    ])
    assert lookup.pod_sandbox(rt, "default", "web").id == "new-sandbox"
    assert lookup.find_container(rt, "default", "web", "main").id == "new-c"
    assert lookup.find_container(rt, "default", "web", "main", previous=True) is None


def test_pod_containers_maps_each_name_to_its_current_running_instance():
    rt = FakeRuntime([sandbox("s1"), container("a0", 0, running=False), container("a1", 1, running=True),
                      container("b0", 0, name="sidecar", running=True), container("x", 0, uid="u2", running=True)])
    current = lookup.pod_containers(rt, "u1")
    assert {name: r.id for name, r in current.items()} == {"main": "a1", "sidecar": "b0"}


def test_current_by_pod_groups_one_listing_by_pod_and_container():
    records = [container("a0", 0, running=True), container("a1", 1, running=True),
               container("b0", 0, name="sidecar", running=True), container("x", 3, uid="u2", running=True),
               Record("stray", labels={CONTAINER_NAME: "main"})]
    grouped = lookup.current_by_pod(records)
    assert {uid: {name: r.id for name, r in by_name.items()} for uid, by_name in grouped.items()} == \
        {"u1": {"main": "a1", "sidecar": "b0"}, "u2": {"main": "x"}}
