"""Watch over real HTTP: initial state, resume from a resourceVersion, selectors moving
objects in and out, bookmarks, timeouts, and 410 after compaction."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from tests.integration.conftest import start_apiserver, stop_apiserver

PODS = "/api/v1/namespaces/default/pods"
MERGE = {"content-type": "application/merge-patch+json"}


def pod(name: str, app: str = "web") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


@pytest.fixture
def apiserver(reused_apiserver):
    """This module's tests share one server (see tests/integration/conftest.py)."""
    return reused_apiserver


@contextmanager
def watching(apiserver, path: str, **params):
    """Yield a function returning the next (type, object) of a watch stream."""
    params = {"watch": "1", "timeoutSeconds": "20", **params}
    with apiserver.client(timeout=20) as client:
        with client.stream("GET", path, params=params) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "application/json"
            lines = resp.iter_lines()

            def next_event():
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        return event["type"], event["object"]
                return None
            yield next_event


def test_watch_without_version_sends_current_state_then_changes(apiserver, http):
    http.post(PODS, json=pod("a"))
    with watching(apiserver, PODS) as next_event:
        kind, obj = next_event()
        assert kind == "ADDED" and obj["metadata"]["name"] == "a"
        http.post(PODS, json=pod("b"))
        assert next_event()[0:1] == ("ADDED",)
        http.patch(f"{PODS}/a", json={"metadata": {"labels": {"x": "1"}}}, headers=MERGE)
        kind, obj = next_event()
        assert kind == "MODIFIED" and obj["metadata"]["labels"]["x"] == "1"
        http.delete(f"{PODS}/b")
        kind, obj = next_event()
        assert kind == "DELETED" and obj["metadata"]["name"] == "b"


def test_watch_resumes_exactly_after_a_resource_version(apiserver, http):
    rv = http.post(PODS, json=pod("a")).json()["metadata"]["resourceVersion"]
    http.post(PODS, json=pod("b"))
    http.delete(f"{PODS}/a")
    with watching(apiserver, PODS, resourceVersion=rv) as next_event:
        assert [(t, o["metadata"]["name"]) for t, o in (next_event(), next_event())] == [
            ("ADDED", "b"), ("DELETED", "a")]
        http.post(PODS, json=pod("c"))
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "c")
        assert int(obj["metadata"]["resourceVersion"]) > int(rv)


def test_label_selector_moves_objects_in_and_out(apiserver, http):
    http.post(PODS, json=pod("a", app="other"))
    with watching(apiserver, PODS, labelSelector="app=web") as next_event:
        http.post(PODS, json=pod("b", app="other"))
        http.patch(f"{PODS}/a", json={"metadata": {"labels": {"app": "web"}}}, headers=MERGE)
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "a")
        http.patch(f"{PODS}/a", json={"metadata": {"labels": {"tier": "1"}}}, headers=MERGE)
        assert next_event()[0] == "MODIFIED"
        http.patch(f"{PODS}/a", json={"metadata": {"labels": {"app": "gone"}}}, headers=MERGE)
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"]) == ("DELETED", "a")


def test_label_selector_resume_knows_what_matched_at_the_start(apiserver, http):
    rv = http.post(PODS, json=pod("a", app="web")).json()["metadata"]["resourceVersion"]
    http.patch(f"{PODS}/a", json={"metadata": {"labels": {"app": "other"}}}, headers=MERGE)
    with watching(apiserver, PODS, labelSelector="app=web", resourceVersion=rv) as next_event:
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"]) == ("DELETED", "a")


def test_field_selector_on_name_and_namespace(apiserver, http):
    with watching(apiserver, "/api/v1/pods", fieldSelector="metadata.name=b,metadata.namespace=default") as next_event:
        http.post(PODS, json=pod("a"))
        http.post(PODS, json=pod("b"))
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "b")


def test_bookmarks_carry_only_a_resource_version(apiserver, http):
    rv = http.post(PODS, json=pod("a")).json()["metadata"]["resourceVersion"]
    with watching(apiserver, PODS, resourceVersion=rv, allowWatchBookmarks="true") as next_event:
        kind, obj = next_event()
        assert kind == "BOOKMARK"
        assert obj["kind"] == "Pod" and int(obj["metadata"]["resourceVersion"]) >= int(rv)
        assert set(obj["metadata"]) == {"resourceVersion"}


def test_timeout_ends_the_stream(apiserver, http):
    with watching(apiserver, PODS, timeoutSeconds="1") as next_event:
        assert next_event() is None


def test_watch_a_cluster_scoped_kind(apiserver, http):
    with watching(apiserver, "/api/v1/namespaces", resourceVersion=str(
            http.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"])) as next_event:
        http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w"}})
        kind, obj = next_event()
        assert (kind, obj["metadata"]["name"], obj["status"]["phase"]) == ("ADDED", "w", "Active")


@pytest.fixture
def tight_cache_apiserver(etcd_server):
    """An apiserver whose watch cache keeps 2 events and lets a watcher lag 4 behind."""
    thread, running = start_apiserver(etcd_server, cache_options={"buffer": 4, "window": 2})
    try:
        yield running
    finally:
        stop_apiserver(thread)


def test_a_watcher_that_falls_behind_is_closed_with_410(tight_cache_apiserver):
    api = tight_cache_apiserver
    rv = api.client().get("/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
    big = "x" * (512 * 1024)
    with api.client(timeout=60) as client:
        with client.stream("GET", "/api/v1/namespaces/default/configmaps",
                           params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "60"}) as resp:
            with api.client(timeout=60) as writer:
                for i in range(40):  # ~20 MiB the watcher does not read: more than the socket buffers
                    assert writer.post("/api/v1/namespaces/default/configmaps", json={
                        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"},
                        "data": {"k": big}}).status_code == 201
            events = [json.loads(line) for line in resp.iter_lines() if line.strip()]
    assert 0 < len(events) < 41
    last = events[-1]
    assert last["type"] == "ERROR" and last["object"]["code"] == 410


def test_compacted_version_gives_410(tight_cache_apiserver):
    apiserver = tight_cache_apiserver
    http = apiserver.client()
    old = http.post(PODS, json=pod("a")).json()["metadata"]["resourceVersion"]
    http.post(PODS, json=pod("b"))
    newest = int(http.post(PODS, json=pod("c")).json()["metadata"]["resourceVersion"])
    apiserver.run(apiserver.storage.compact(newest))
    with watching(apiserver, PODS, resourceVersion=old) as next_event:
        kind, status = next_event()
        assert kind == "ERROR"
        assert status["kind"] == "Status" and status["code"] == 410
        assert next_event() is None
    listed = http.get(PODS, params={"resourceVersion": old, "resourceVersionMatch": "Exact"})
    assert listed.status_code == 410 and listed.json()["code"] == 410
