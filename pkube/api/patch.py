"""The three patch formats of the Kubernetes API, as pure functions on JSON-like dicts.

- `json_merge_patch` — RFC 7386 (`application/merge-patch+json`);
- `json_patch` — RFC 6902 (`application/json-patch+json`);
- `strategic_merge_patch` / `three_way_merge_patch` — Kubernetes' strategic merge patch
  (`application/strategic-merge-patch+json`), implemented in pkube/api/strategic.py.

Every function returns a new object and leaves its inputs untouched. Bad patches raise
PatchError (a ValueError) with a message fit for a 400/422 answer.
"""

from __future__ import annotations

import copy

from pkube.api.jsonvalue import deep_copy
from pkube.api.strategic import PatchError, strategic_merge_patch, three_way_merge_patch, two_way_merge_patch

__all__ = ["PatchError", "json_merge_patch", "json_patch", "strategic_merge_patch", "three_way_merge_patch",
           "two_way_merge_patch"]


def json_merge_patch(target, patch):
    """Apply an RFC 7386 merge patch: objects merge recursively, null deletes, the rest
    replaces. Returns a new value sharing nothing with ``target`` or ``patch``."""
    if not isinstance(patch, dict):
        return deep_copy(patch)
    result = deep_copy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict, patch: dict) -> None:
    """Merge ``patch`` into ``result`` (a private copy: changed in place)."""
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(result.get(key), dict):
                result[key] = {}
            _merge_into(result[key], value)
        else:
            result[key] = deep_copy(value) if isinstance(value, list) else value


def json_patch(target, operations: list):
    """Apply an RFC 6902 JSON patch; raises PatchError on a bad operation, path or failed test."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations")
    document = deep_copy(target)
    for index, operation in enumerate(operations):
        document = _apply_operation(document, operation, index)
    return document


def _apply_operation(document, operation, index: int):
    if not isinstance(operation, dict):
        raise PatchError(f"json patch operation {index} must be an object")
    op = operation.get("op")
    handler = _OPERATIONS.get(op)
    if handler is None:
        raise PatchError(f"json patch operation {index}: unknown op {op!r}")
    try:
        return handler(document, operation)
    except KeyError as missing:
        raise PatchError(f"json patch operation {index} ({op}): missing member {missing}") from None
    except PatchError as error:
        raise PatchError(f"json patch operation {index} ({op}): {error}") from None


def parse_pointer(pointer: str) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped tokens ("" is the whole document)."""
    if not isinstance(pointer, str):
        raise PatchError(f"path must be a string, not {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"path {pointer!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _list_index(container: list, token: str, pointer: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"path {pointer!r}: {token!r} is not an array index")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"path {pointer!r}: index {index} out of range")
    return index


def _resolve_parent(document, pointer: str):
    """The container holding the last token of `pointer`, and that token."""
    tokens = parse_pointer(pointer)
    if not tokens:
        raise PatchError("path '' names the whole document")
    return _resolve(document, tokens[:-1], pointer), tokens[-1]


def _resolve(document, tokens: list[str], pointer: str):
    current = document
    for token in tokens:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path {pointer!r} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, pointer, allow_end=False)]
        else:
            raise PatchError(f"path {pointer!r} does not exist")
    return current


def _get(document, pointer: str):
    return _resolve(document, parse_pointer(pointer), pointer)


def _add(document, pointer: str, value):
    if pointer == "":
        return value
    parent, token = _resolve_parent(document, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, token, pointer, allow_end=True), value)
    else:
        raise PatchError(f"path {pointer!r}: parent is not an object or array")
    return document


def _remove(document, pointer: str):
    parent, token = _resolve_parent(document, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path {pointer!r} does not exist")
        del parent[token]
    elif isinstance(parent, list):
        del parent[_list_index(parent, token, pointer, allow_end=False)]
    else:
        raise PatchError(f"path {pointer!r} does not exist")
    return document


def _op_add(document, operation):
    return _add(document, operation["path"], copy.deepcopy(operation["value"]))


def _op_remove(document, operation):
    return _remove(document, operation["path"])


def _op_replace(document, operation):
    path = operation["path"]
    value = copy.deepcopy(operation["value"])
    if path == "":
        return value
    _get(document, path)  # must exist
    parent, token = _resolve_parent(document, path)
    if isinstance(parent, list):
        parent[_list_index(parent, token, path, allow_end=False)] = value
    else:
        parent[token] = value
    return document


def _op_move(document, operation):
    source, path = operation["from"], operation["path"]
    parse_pointer(source), parse_pointer(path)  # both must be pointers
    if path != source and path.startswith(source + "/"):
        raise PatchError(f"cannot move {source!r} into its own child {path!r}")
    value = _get(document, source)
    document = _remove(document, source)
    return _add(document, path, value)


def _op_copy(document, operation):
    value = copy.deepcopy(_get(document, operation["from"]))
    return _add(document, operation["path"], value)


def _op_test(document, operation):
    actual = _get(document, operation["path"])
    if not _json_equal(actual, operation["value"]):
        raise PatchError(f"test failed: value at {operation['path']!r} is {actual!r}, "
                         f"not {operation['value']!r}")
    return document


def _json_equal(a, b) -> bool:
    """JSON equality: 1 == 1.0 but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)


_OPERATIONS = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}
