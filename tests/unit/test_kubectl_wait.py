"""pkubectl wait: --for parsing, kubectl's condition rules, durations, and following a watch
(with a recording client: one list, then the watch from the list's revision; a 410 lists again)."""

from types import SimpleNamespace

import pytest

from pkube.client.errors import Gone, status_for
from pkube.client.resources import PODS
from pkube.kubectl.errors import CliError
from pkube.kubectl.mutate import Target
from pkube.kubectl.session import ApiResource
from pkube.kubectl.waiting import (WaitFor, condition_met, jsonpath_met, object_states, parse_duration, parse_for,
                             wait_one)


def test_for_flag_forms():
    assert parse_for("delete") == WaitFor("delete")
    assert parse_for("condition=Ready") == WaitFor("condition", "Ready", "true")
    assert parse_for("condition=Ready=False") == WaitFor("condition", "Ready", "False")
    assert parse_for("jsonpath={.status.phase}=Running") == WaitFor("jsonpath", "{.status.phase}", "Running")
    assert parse_for("jsonpath={.status.podIP}") == WaitFor("jsonpath", "{.status.podIP}", None)
    for bad in ("", "sideways", "condition="):
        with pytest.raises(CliError, match="unrecognized condition"):
            parse_for(bad)


def test_conditions_match_type_and_status_without_case_and_respect_generations():
    pod = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert condition_met(pod, parse_for("condition=ready"))
    assert condition_met(pod, parse_for("condition=Ready=true"))
    assert not condition_met(pod, parse_for("condition=Ready=False"))
    assert not condition_met(pod, parse_for("condition=Available"))
    stale = {"metadata": {"generation": 3},
             "status": {"observedGeneration": 2, "conditions": [{"type": "Available", "status": "True"}]}}
    assert not condition_met(stale, parse_for("condition=Available"))
    stale["status"]["observedGeneration"] = 3
    assert condition_met(stale, parse_for("condition=Available"))


def test_jsonpath_values():
    pod = {"status": {"phase": "Running", "ready": True}}
    assert jsonpath_met(pod, parse_for("jsonpath={.status.phase}=Running"))
    assert not jsonpath_met(pod, parse_for("jsonpath={.status.phase}=Pending"))
    assert jsonpath_met(pod, parse_for("jsonpath={.status.ready}=true"))
    assert not jsonpath_met(pod, parse_for("jsonpath={.status.podIP}"))


def test_durations_as_go_writes_them():
    assert parse_duration("30s") == 30 and parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5
    assert parse_duration("0") == 0 and parse_duration("2h") == 7200 and parse_duration("15") == 15
    with pytest.raises(CliError, match='invalid duration "soon"'):
        parse_duration("soon")


class RecordingClient:
    """A list answer and then watch streams, one per watch call; records the calls."""

    def __init__(self, listed: list[dict], watches: list):
        self.listed, self.watches, self.calls = listed, list(watches), []

    def list(self, resource, namespace, field_selector=None):
        self.calls.append(("list", field_selector))
        return {"metadata": {"resourceVersion": str(10 + len(self.calls))}, "items": self.listed}

    def watch(self, resource, namespace, revision, field_selector=None, timeout_seconds=None):
        self.calls.append(("watch", revision, field_selector))
        events = self.watches.pop(0) if self.watches else []
        if isinstance(events, Exception):
            raise events
        yield from events


def _session(client):
    return SimpleNamespace(client=client)


POD = ApiResource("", "v1", "pods", "Pod", True)


def test_states_come_from_one_list_then_the_watch_from_its_revision():
    ready = {"metadata": {"name": "web", "uid": "u1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    client = RecordingClient([{"metadata": {"name": "web", "uid": "u1"}}],
                             [[("BOOKMARK", {}), ("MODIFIED", {"metadata": {"name": "web"}}), ("MODIFIED", ready)]])
    obj = wait_one(_session(client), Target(POD, "web", "default"), parse_for("condition=Ready"), deadline=1e12)
    assert obj == ready
    assert client.calls == [("list", "metadata.name=web"), ("watch", "11", "metadata.name=web")]


def test_a_gone_watch_lists_again_and_a_delete_is_seen():
    client = RecordingClient([{"metadata": {"name": "web", "uid": "u1"}}],
                             [Gone(status_for(410, "Gone", "too old")), [("DELETED", {"metadata": {"name": "web"}})]])
    assert wait_one(_session(client), Target(POD, "web", "default"), WaitFor("delete"), 1e12, uid="u1") is None
    assert [c[0] for c in client.calls] == ["list", "watch", "list", "watch"]


def test_a_recreated_object_counts_as_deleted():
    client = RecordingClient([{"metadata": {"name": "web", "uid": "new"}}], [])
    assert wait_one(_session(client), Target(POD, "web", "default"), WaitFor("delete"), 1e12, uid="old") is None


def test_the_deadline_ends_the_wait_with_kubectls_message():
    client = RecordingClient([{"metadata": {"name": "web"}}], [])
    with pytest.raises(CliError, match="^timed out waiting for the condition on pods/web$"):
        wait_one(_session(client), Target(POD, "web", "default"), parse_for("condition=Ready"), deadline=0)
    assert list(object_states(_session(client), PODS, "default", "web", deadline=0)) == []
