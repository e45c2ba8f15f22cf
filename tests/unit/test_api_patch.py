"""JSON merge patch (RFC 7386 appendix A) and JSON patch (RFC 6902 appendix A)."""

import copy

import pytest

from pkube.api.patch import PatchError, json_merge_patch, json_patch


@pytest.mark.parametrize("target, patch, expected", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_json_merge_patch_rfc7386_examples(target, patch, expected):
    before = copy.deepcopy(target)
    assert json_merge_patch(target, patch) == expected
    assert target == before


def test_merge_patch_sets_labels_on_a_pod():
    pod = {"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    patched = json_merge_patch(pod, {"metadata": {"labels": {"tier": "db", "app": None}}})
    assert patched["metadata"]["labels"] == {"tier": "db"}
    assert patched["spec"] == pod["spec"]


@pytest.mark.parametrize("target, ops, expected", [
    # A.1 adding an object member
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    # A.2 adding an array element
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    # A.3 removing an object member
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    # A.4 removing an array element
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    # A.5 replacing a value
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    # A.6 moving a value
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    # A.7 moving an array element
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    # A.8 testing a value: success
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    # A.10 adding a nested member object
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    # A.11 ignoring unrecognized elements
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
     {"foo": "bar", "baz": "qux"}),
    # A.14 ~ escape ordering
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    # A.16 adding an array value
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # copy, replace of the whole document, escaped slash
    ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ({"metadata": {"annotations": {}}},
     [{"op": "add", "path": "/metadata/annotations/example.com~1key", "value": "v"}],
     {"metadata": {"annotations": {"example.com/key": "v"}}}),
])
def test_json_patch_rfc6902_examples(target, ops, expected):
    before = copy.deepcopy(target)
    assert json_patch(target, ops) == expected
    assert target == before


@pytest.mark.parametrize("target, ops", [
    # A.9 testing a value: error
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}]),
    # A.12 adding to a nonexistent target
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}]),
    # A.15 comparing strings and numbers
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}]),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": True}]),
    ({"a": 1}, [{"op": "remove", "path": "/b"}]),
    ({"a": [1]}, [{"op": "remove", "path": "/a/5"}]),
    ({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 2}]),
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}]),
    ({"a": 1}, [{"op": "frobnicate", "path": "/a"}]),
    ({"a": 1}, [{"op": "add", "value": 2}]),
    ({"a": 1}, [{"op": "add", "path": "a", "value": 2}]),
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}]),
    ({"a": 1}, {"op": "add"}),
    ({"a": 1}, ["not an op"]),
])
def test_json_patch_errors(target, ops):
    before = copy.deepcopy(target)
    with pytest.raises(PatchError):
        json_patch(target, ops)
    assert target == before


def test_failed_test_leaves_input_untouched_even_after_earlier_ops():
    target = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(target, [{"op": "add", "path": "/b", "value": 2},
                            {"op": "test", "path": "/a", "value": 3}])
    assert target == {"a": 1}


def test_merge_patch_results_share_nothing_with_the_target_or_the_patch():
    target = {"status": {"conditions": [{"type": "Ready"}], "phase": "Pending"}, "spec": {"a": [1]}}
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "hostIP": "10.0.0.1"},
             "spec": {"b": {"c": [2]}}}
    first, second = json_merge_patch(target, patch), json_merge_patch(target, patch)
    first["status"]["conditions"][0]["status"] = "False"
    first["spec"]["a"].append(9)
    first["spec"]["b"]["c"].append(9)
    assert target == {"status": {"conditions": [{"type": "Ready"}], "phase": "Pending"}, "spec": {"a": [1]}}
    assert patch["status"]["conditions"] == [{"type": "Ready", "status": "True"}] and patch["spec"]["b"] == {"c": [2]}
    assert second == {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Pending",
                                 "hostIP": "10.0.0.1"}, "spec": {"a": [1], "b": {"c": [2]}}}
