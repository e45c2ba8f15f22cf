"""Label and field selectors, with the cases of Kubernetes' labels/selector_test.go semantics."""

import pytest

from pkube.api.selectors import (
    SelectorError,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
    selector_to_dict,
)

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "version": "3"}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app = web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in ( db , api )", False),
    ("app notin (db)", True),
    ("app notin (web,db)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=frontend", True),
    ("app=web, tier=backend", False),
    ("app=web,!missing,env in (prod,staging)", True),
    ("version>2", True),
    ("version<3", False),
    ("app=", False),
    ("empty=", True),
])
def test_label_selector_matches(text, expected):
    assert parse_label_selector(text).matches({**LABELS, "empty": ""}) is expected


@pytest.mark.parametrize("text", [
    "app=web,",
    "app in web",
    "app in ()",
    "app in (web",
    "=web",
    "app=web tier=db",
    "Bad Key=x",
    "app=has space",
    "app=-bad-",
    "a/b/c=x",
    "x=" + "a" * 64,
    "!",
    "version>abc",
    "app in (a b)",
])
def test_label_selector_rejects_bad_syntax(text):
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_empty_label_selector_matches_everything_and_none_labels():
    selector = parse_label_selector("  ")
    assert selector.empty
    assert selector.matches(None)
    assert selector.matches({"a": "b"})


def test_label_selector_string_form_is_sorted_and_normalised():
    selector = parse_label_selector("tier in (b,a), app==web, !gone, env")
    assert str(selector) == "app=web,env,!gone,tier in (a,b)"
    assert parse_label_selector(str(selector)) == selector


def test_label_selector_keys_with_prefix():
    selector = parse_label_selector("app.kubernetes.io/name=web")
    assert selector.matches({"app.kubernetes.io/name": "web"})
    assert not selector.matches({"name": "web"})


@pytest.mark.parametrize("sel, labels, expected", [
    ({}, {"a": "b"}, True),
    ({}, None, True),
    ({"matchLabels": {"app": "web"}}, LABELS, True),
    ({"matchLabels": {"app": "db"}}, LABELS, False),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, LABELS, True),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, LABELS, False),
    ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, LABELS, True),
    ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, LABELS, False),
    ({"matchLabels": {"app": "web"},
      "matchExpressions": [{"key": "tier", "operator": "In", "values": ["backend"]}]}, LABELS, False),
])
def test_label_selector_from_dict(sel, labels, expected):
    assert label_selector_from_dict(sel).matches(labels) is expected


def test_none_selector_matches_nothing():
    selector = label_selector_from_dict(None)
    assert not selector.empty
    assert not selector.matches({})
    assert not selector.matches(LABELS)


@pytest.mark.parametrize("sel", [
    {"matchExpressions": [{"key": "a", "operator": "Foo", "values": ["x"]}]},
    {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
    {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
    {"matchLabels": {"bad key": "x"}},
    {"matchLabels": {"a": "bad value!"}},
])
def test_label_selector_from_dict_rejects(sel):
    with pytest.raises(SelectorError):
        label_selector_from_dict(sel)


def test_selector_round_trips_through_dict():
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}
    assert selector_to_dict(label_selector_from_dict(sel)) == sel


POD = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "node-a", "schedulerName": "default-scheduler"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("metadata.name=web-1", True),
    ("metadata.name==web-1", True),
    ("metadata.name!=web-1", False),
    ("spec.nodeName=node-a,status.phase=Running", True),
    ("spec.nodeName=node-a,status.phase!=Running", False),
    ("spec.nodeName=", False),
    ("spec.missing=", True),
    ("spec.missing!=", False),
    ("status.phase!=Pending", True),
])
def test_field_selector_matches(text, expected):
    assert parse_field_selector(text).matches(POD) is expected


def test_field_selector_reports_its_fields():
    selector = parse_field_selector("metadata.name=a,spec.nodeName!=b")
    assert selector.fields() == {"metadata.name", "spec.nodeName"}
    assert selector.value_for("metadata.name") == "a"
    assert selector.value_for("spec.nodeName") is None


def test_field_selector_escapes():
    selector = parse_field_selector(r"metadata.name=a\,b\=c")
    assert selector.matches({"metadata": {"name": "a,b=c"}})
    assert str(selector) == r"metadata.name=a\,b\=c"


def test_field_selector_booleans_compare_as_text():
    assert parse_field_selector("spec.unschedulable=true").matches({"spec": {"unschedulable": True}})


@pytest.mark.parametrize("text", ["metadata.name", "=x", "a=b=c", r"a=b\x"])
def test_field_selector_rejects(text):
    with pytest.raises(SelectorError):
        parse_field_selector(text)


def test_event_involved_object_fields():
    event = {"involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"},
             "type": "Warning", "reason": "Failed"}
    selector = parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web-1,"
                                    "involvedObject.uid=u1,type=Warning,reason=Failed")
    assert selector.matches(event)


def test_selector_to_dict_of_string_syntax():
    assert selector_to_dict(parse_label_selector("a=b,c!=d,!e")) == {
        "matchLabels": {"a": "b"},
        "matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["d"]},
                             {"key": "e", "operator": "DoesNotExist"}]}
    with pytest.raises(SelectorError):
        selector_to_dict(parse_label_selector("a>1"))
