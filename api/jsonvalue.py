"""Deep copies of JSON values (what API objects are made of).

``copy.deepcopy`` walks every node in Python and keeps a memo for cycles JSON
cannot have; a round trip through orjson does the same copy several times
faster. Anything orjson cannot encode (non-string keys, integers beyond 64
bits, other types) is copied by ``copy.deepcopy`` instead, so the result is
always a faithful copy of a JSON value; tuples come back as lists, and the
non-JSON floats NaN and Infinity as None.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson


def deep_copy(value: Any) -> Any:
    """A deep copy of ``value``, sharing nothing mutable with it."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(value)
