"""runtime.jsonlite gives what the json package gives, for the documents the runtime stores."""

import json
import math

import pytest

from pkube.runtime import jsonlite

DOCUMENTS = [
    {"id": "abc", "status": "running", "pid": 42, "exit_code": -1, "oom_killed": False,
     "endpoint": None, "ratio": 0.25, "big": 2 ** 70, "layers": ["/a/b", "/c"],
     "env": {"PATH": "/usr/bin", "LANG": "C.UTF-8"}, "nested": [[], {}, [{"x": [1, 2.5e-9]}]]},
    {"unicode": "héllo \u2603 \U0001F600", "escapes": "tab\tquote\"backslash\\nl\n\x00\x1f"},
    [], {}, "text", 0, -7.5, True, None,
]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_round_trip_matches_the_json_package(doc):
    text = jsonlite.dumps(doc)
    assert text == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    assert jsonlite.loads(text) == doc
    assert jsonlite.loads(text.encode()) == doc
    pretty = json.dumps(doc, indent=2)
    assert jsonlite.loads(f"\n  {pretty}\n") == json.loads(pretty)


@pytest.mark.parametrize("bad", ["", "{", '{"a": 1} x', "[1,]", "NaN", '{"a": Infinity}', "'x'", "{'a': 1}"])
def test_invalid_documents_raise_value_error(bad):
    with pytest.raises(ValueError):
        jsonlite.loads(bad)


def test_values_json_cannot_hold_raise():
    with pytest.raises(TypeError, match="set"):
        jsonlite.dumps({"a": {1, 2}})
    with pytest.raises(ValueError):
        jsonlite.dumps([math.nan])
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        jsonlite.dumps(loop)


def test_tuples_become_lists_and_key_order_is_kept():
    assert jsonlite.dumps({"b": (1, 2), "a": 1}) == '{"b":[1,2],"a":1}'
