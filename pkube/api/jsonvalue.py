"""JSON values (what API objects are made of): one compact encoding, decoding, deep copies.

orjson does each several times faster than the standard library (and than
``copy.deepcopy``, which walks every node in Python and keeps a memo for
cycles JSON cannot have). What orjson refuses — non-string keys, integers
beyond 64 bits, other types — takes the slower way, so every function accepts
what the standard library would.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson


def fitted(raw: bytes) -> bytes:
    """``raw`` in a bytes object of its own size. orjson (3.13) returns its whole working
    buffer: at least 4 KiB, then doubling (a 3 KiB object holds 32 KiB, 100 KiB holds 1 MiB).
    What is kept (the watch cache's events, the store's last writes) held ~10 times its size
    in malloc'd memory that way: the apiserver's memory grew as those filled (issue 12).
    The copy costs ~0.3 us per KiB."""
    return bytes(memoryview(raw))


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes, keys in insertion order (non-string keys as strings);
    the bytes object is the size of its content (``fitted``)."""
    try:
        return fitted(orjson.dumps(value))
    except TypeError:
        pass
    try:
        return fitted(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))  # half as fast: only when needed
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_sorted(value: Any) -> bytes:
    """Like ``dumps`` with every object's keys sorted (code point order, which is the byte
    order Go's encoding/json sorts a map[string]interface{} by: unstructured objects)."""
    try:
        return fitted(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


# What Go's encoding/json escapes that orjson writes as is (json.Encoder's SetEscapeHTML default).
_GO_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
               ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))
_GO_SPECIAL = b"<>&\xe2"      # the bytes those start with (0xe2 leads U+2000..U+2FFF)


def go_escaped(body: bytes) -> bytes:
    """Compact JSON ``body`` with the characters Go's encoder escapes (<, >, &, U+2028, U+2029)
    escaped as it does, so bodies read as Kubernetes writes them. They can only occur inside
    strings, so a plain replace is exact."""
    if len(body.translate(None, _GO_SPECIAL)) == len(body):
        return body             # the usual case: one C pass, no copy kept
    for raw, escaped in _GO_ESCAPES:
        if raw in body:
            body = body.replace(raw, escaped)
    return body


def loads(raw: bytes | str) -> Any:
    """The JSON value in ``raw``; ValueError (orjson.JSONDecodeError) when malformed,
    NaN and Infinity included."""
    return orjson.loads(raw)


def deep_copy(value: Any) -> Any:
    """A deep copy of ``value``, sharing nothing mutable with it. Tuples come back as
    lists, and the non-JSON floats NaN and Infinity as None."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return copy.deepcopy(value)
