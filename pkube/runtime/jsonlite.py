"""JSON for the runtime's own files (state.json, repositories.json, image configs), on the C
accelerator the standard `json` package itself uses, without importing that package.

Why: `import json` imports `re` (json.decoder and json.scanner compile patterns at import),
and `re` imports `enum` and `functools`: about 10 ms of a `pdocker run` whose whole budget
is runc's 30 (docs/runtime.md, "Where a pdocker run spends its time"). `_json` is the C
module behind json.loads/json.dumps: `make_scanner` is what `json.scanner` binds as
`c_make_scanner`, `make_encoder` what `json.encoder` binds as `c_make_encoder`, called here
exactly as json calls them for compact output. Results equal json's
(tests/unit/test_jsonlite.py compares them); where a caller wants indented output (say
`pdocker inspect`), it uses `json`.

loads(text) and dumps(obj) raise ValueError (invalid document; a NaN or Infinity is refused
on both sides, strict JSON) and TypeError (a value JSON cannot hold), as json does.
"""

from __future__ import annotations

import _json

WHITESPACE = " \t\n\r"


class _DecodeContext:
    """The attributes `_json.make_scanner` reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str):
        raise ValueError(f"{name} is not valid JSON")


def _unsupported(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def loads(data: str | bytes):
    """The value encoded in `data` (str, or UTF-8 bytes). Raises ValueError."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    scan = _json.make_scanner(_DecodeContext())
    start = len(text) - len(text.lstrip(WHITESPACE))
    try:
        value, end = scan(text, start)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    if text[end:].strip(WHITESPACE):
        raise ValueError(f"invalid JSON: extra data at offset {end}")
    return value


def dumps(value) -> str:
    """Compact JSON (separators "," and ":"), non-ASCII kept as is, key order kept."""
    encode = _json.make_encoder({}, _unsupported, _json.encode_basestring, None, ":", ",",
                                False, False, False)
    return "".join(encode(value, 0))
