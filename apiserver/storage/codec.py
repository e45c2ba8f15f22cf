"""The JSON codec of stored values and the wire: compact UTF-8, orjson first.

orjson is about 3x faster than the standard library on Kubernetes objects;
the standard library takes over for what orjson refuses to encode
(integers beyond 64 bits). ``loads`` raises ValueError on malformed input,
NaN/Infinity included.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, keys in insertion order (non-string keys as strings)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        pass
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)  # half as fast: only when needed
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    """The JSON value in ``raw``; ValueError (orjson.JSONDecodeError) when malformed."""
    return orjson.loads(raw)
