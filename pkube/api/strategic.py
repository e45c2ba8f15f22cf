"""Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`) for built-in
kinds, and the three-way patch `kubectl apply` computes.

Which lists merge and by which key comes from the kind's schema (kubernetes-validate ships
Kubernetes' `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`), so containers
merge by name, container ports by containerPort, service ports by port, volumeMounts by
mountPath, finalizers as a set, and every other list is replaced. For a kind without a schema
every list is replaced (JSON merge patch semantics plus the directives).

Directives: `$patch: replace|delete|merge` (in a map or as a list element),
`$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`, `$retainKeys`. null deletes.
"""

from __future__ import annotations

import copy
import json
from typing import NamedTuple

from pkube.api.jsonvalue import deep_copy
from pkube.api.schemas import SchemaNotFound, SchemaSet, shared_schema_set

PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"
_MISSING = object()


class PatchError(ValueError):
    """A patch that cannot be applied: bad shape, bad path, failed test, unknown directive."""


class PatchMeta(NamedTuple):
    """How a field merges: strategies ("merge", "retainKeys") and the list merge key."""

    strategies: frozenset = frozenset()
    merge_key: str | None = None

    @property
    def merges(self) -> bool:
        return "merge" in self.strategies


class SchemaCursor:
    """A position in a kind's schema; `None` schema means "unknown here" (lists replace)."""

    def __init__(self, schemas: SchemaSet | None, schema: dict | None):
        self.schemas = schemas
        self.schema = schemas.resolve(schema) if schemas and schema else None

    def field(self, key: str) -> tuple["SchemaCursor", PatchMeta]:
        """The cursor and patch metadata of a map's field."""
        if not isinstance(self.schema, dict):
            return SchemaCursor(None, None), PatchMeta()
        raw = (self.schema.get("properties") or {}).get(key)
        if raw is None and isinstance(self.schema.get("additionalProperties"), dict):
            raw = self.schema["additionalProperties"]
        if not isinstance(raw, dict):
            return SchemaCursor(None, None), PatchMeta()
        strategies = frozenset(s for s in raw.get("x-kubernetes-patch-strategy", "").split(",") if s)
        return SchemaCursor(self.schemas, raw), PatchMeta(strategies, raw.get("x-kubernetes-patch-merge-key"))

    def item(self) -> "SchemaCursor":
        """The cursor of a list's elements."""
        if not isinstance(self.schema, dict):
            return SchemaCursor(None, None)
        return SchemaCursor(self.schemas, self.schema.get("items"))


def cursor_for_kind(kind: str, schemas: SchemaSet | None = None) -> SchemaCursor:
    """The root cursor of a kind (an empty cursor for kinds without a schema)."""
    schemas = schemas or shared_schema_set()
    try:
        return SchemaCursor(schemas, schemas.schema_for_kind(kind))
    except SchemaNotFound:
        return SchemaCursor(None, None)


# --- applying a strategic merge patch ----------------------------------------------------------

def strategic_merge_patch(target: dict, patch: dict, kind: str, schemas: SchemaSet | None = None) -> dict:
    """Apply a strategic merge patch to `target` (a `kind` object); returns a new object.

    Raises PatchError for a patch that is not an object, an unknown directive, or a list
    element without its merge key.
    """
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    if not isinstance(target, dict):
        raise PatchError("the object to patch must be a JSON object")
    merged = _merge_map(deep_copy(target), patch, cursor_for_kind(kind, schemas))
    return merged if merged is not None else {}


def _merge_map(original: dict, patch: dict, cursor: SchemaCursor) -> dict | None:
    """Merge `patch` into `original` (mutated); None when the patch deletes the whole map."""
    patch = dict(patch)
    directive = patch.pop(PATCH_DIRECTIVE, None)
    if directive == "replace":
        return strip_directives(patch)
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch directive {directive!r} in a map")
    original = _retain_keys(original, patch)
    orders, deletions = _pop_list_directives(patch)
    for field, values in deletions.items():
        if isinstance(original.get(field), list):
            original[field] = [v for v in original[field] if v not in values]
    for key, value in patch.items():
        _merge_field(original, key, value, cursor)
    for field, order in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _apply_order(original[field], order, cursor.field(field)[1].merge_key)
    return original


def _retain_keys(original: dict, patch: dict) -> dict:
    retain = patch.pop(RETAIN_KEYS, None)
    if retain is None:
        return original
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise PatchError(f"{RETAIN_KEYS} must be a list of field names")
    outside = [k for k in patch if not k.startswith("$") and k not in retain and patch[k] is not None]
    if outside:
        raise PatchError(f"{RETAIN_KEYS} does not list the patched fields {outside}")
    return {k: v for k, v in original.items() if k in retain}


def _pop_list_directives(patch: dict) -> tuple[dict, dict]:
    orders, deletions = {}, {}
    for key in [k for k in patch if k.startswith("$")]:
        value = patch.pop(key)
        if key.startswith(SET_ORDER):
            orders[key[len(SET_ORDER):]] = _as_list(value, key)
        elif key.startswith(DELETE_FROM_PRIMITIVE):
            deletions[key[len(DELETE_FROM_PRIMITIVE):]] = _as_list(value, key)
        else:
            raise PatchError(f"unknown patch directive {key!r}")
    return orders, deletions


def _as_list(value, key: str) -> list:
    if not isinstance(value, list):
        raise PatchError(f"{key} must be a list")
    return value


def _merge_field(original: dict, key: str, value, cursor: SchemaCursor) -> None:
    child, meta = cursor.field(key)
    current = original.get(key)
    if value is None:
        original.pop(key, None)
    elif isinstance(value, dict):
        merged = _merge_map(current if isinstance(current, dict) else {}, value, child)
        if merged is None:
            original.pop(key, None)
        else:
            original[key] = merged
    elif isinstance(value, list):
        original[key] = _merge_list(current if isinstance(current, list) else [], value, child, meta)
    else:
        original[key] = value


def _merge_list(original: list, patch: list, cursor: SchemaCursor, meta: PatchMeta) -> list:
    if any(isinstance(item, dict) and item.get(PATCH_DIRECTIVE) == "replace" for item in patch):
        return [strip_directives(item) for item in patch
                if not (isinstance(item, dict) and item.get(PATCH_DIRECTIVE) == "replace")]
    if not meta.merges:
        return strip_directives(patch)
    if meta.merge_key is None:
        return original + [v for i, v in enumerate(patch) if v not in original and v not in patch[:i]]
    return _merge_keyed_list(original, patch, cursor.item(), meta.merge_key)


def _merge_keyed_list(original: list, patch: list, item_cursor: SchemaCursor, merge_key: str) -> list:
    result = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list merged by {merge_key!r} holds a non-object element {item!r}")
        if merge_key not in item:
            raise PatchError(f"map: {json.dumps(item)} does not contain declared merge key: {merge_key}")
        matches = [i for i, old in enumerate(result)
                   if isinstance(old, dict) and old.get(merge_key) == item[merge_key]]
        if item.get(PATCH_DIRECTIVE) == "delete":
            result = [old for i, old in enumerate(result) if i not in matches]
        elif matches:
            merged = _merge_map(result[matches[0]], item, item_cursor)
            result[matches[0]] = merged
        else:
            result.append(_merge_map({}, item, item_cursor))
    return [item for item in result if item is not None]


def _identity(item, merge_key: str | None) -> str:
    value = item.get(merge_key) if merge_key and isinstance(item, dict) else item
    return json.dumps(value, sort_keys=True)


def _apply_order(items: list, order: list, merge_key: str | None) -> list:
    """Reorder the items named by `$setElementOrder`; the others keep their slots."""
    position = {_identity(o, merge_key): n for n, o in enumerate(order)}
    listed = sorted((i for i in items if _identity(i, merge_key) in position),
                    key=lambda i: position[_identity(i, merge_key)])
    listed_iter = iter(listed)
    return [next(listed_iter) if _identity(i, merge_key) in position else i for i in items]


def strip_directives(value):
    """A copy of `value` without any `$...` directive keys or directive-only list elements."""
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value
                if not (isinstance(v, dict) and PATCH_DIRECTIVE in v)]
    return value


# --- computing a three-way patch (kubectl apply) -----------------------------------------------

def three_way_merge_patch(original: dict | None, modified: dict, current: dict, kind: str,
                          schemas: SchemaSet | None = None) -> dict:
    """The patch `kubectl apply` sends: `original` is the last-applied configuration (None on
    the first apply), `modified` the file, `current` the live object.

    Fields set in the file and different live are set; fields that were in `original` and are
    gone from the file become null (maps), `$patch: delete` (keyed list items) or
    `$deleteFromPrimitiveList` (set-like lists); fields only the server set are left alone.
    An empty dict means nothing to change.
    """
    if not isinstance(modified, dict) or not isinstance(current, dict):
        raise PatchError("three-way merge needs objects for modified and current")
    cursor = cursor_for_kind(kind, schemas)
    delta = _diff_maps(current, modified, cursor, additions=True, deletions=False)
    if not isinstance(original, dict):
        return delta
    removals = _diff_maps(original, modified, cursor, additions=False, deletions=True)
    return _combine(removals, delta, cursor)


def two_way_merge_patch(original: dict, modified: dict, kind: str, schemas: SchemaSet | None = None) -> dict:
    """The strategic patch from `original` to `modified` (what `kubectl edit` sends)."""
    return three_way_merge_patch(original, modified, original, kind, schemas)


def _diff_maps(old: dict, new: dict, cursor: SchemaCursor, additions: bool, deletions: bool) -> dict:
    """A patch turning `old` into `new`: changes and additions, or only deletions."""
    patch = {}
    for key, new_value in new.items():
        old_value = old.get(key, _MISSING)
        child, meta = cursor.field(key)
        if old_value is _MISSING or old_value is None:
            if additions and new_value is not None:
                patch[key] = copy.deepcopy(new_value)
        elif isinstance(new_value, dict) and isinstance(old_value, dict):
            sub = _diff_maps(old_value, new_value, child, additions, deletions)
            if sub and additions and "retainKeys" in meta.strategies:
                sub[RETAIN_KEYS] = sorted(new_value)
            if sub:
                patch[key] = sub
        elif isinstance(new_value, list) and isinstance(old_value, list):
            patch.update(_diff_lists(key, old_value, new_value, child, meta, additions, deletions))
        elif additions and not _same(old_value, new_value):
            patch[key] = copy.deepcopy(new_value)
    if deletions:
        patch.update({key: None for key in old if key not in new})
    return patch


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _diff_lists(key, old: list, new: list, cursor, meta: PatchMeta, additions: bool, deletions: bool) -> dict:
    if not meta.merges:
        return {key: copy.deepcopy(new)} if additions and old != new else {}
    if meta.merge_key is None or not all(isinstance(i, dict) for i in old + new):
        return _diff_primitive_lists(key, old, new, additions, deletions)
    retain = additions and "retainKeys" in meta.strategies
    return _diff_keyed_lists(key, old, new, cursor.item(), meta.merge_key, additions, deletions, retain)


def _diff_primitive_lists(key, old: list, new: list, additions: bool, deletions: bool) -> dict:
    patch = {}
    added = [v for v in new if v not in old]
    removed = [v for v in old if v not in new]
    if additions and added:
        patch[key] = added
    if additions and (added or [v for v in old if v in new] != [v for v in new if v in old]):
        patch[SET_ORDER + key] = copy.deepcopy(new)
    if deletions and removed:
        patch[DELETE_FROM_PRIMITIVE + key] = removed
    return patch


def _diff_keyed_lists(key, old: list, new: list, item_cursor, merge_key: str,
                      additions: bool, deletions: bool, retain: bool = False) -> dict:
    old_by_key = {_identity(i, merge_key): i for i in old}
    new_keys = {_identity(i, merge_key) for i in new}
    entries = []
    for item in new:
        before = old_by_key.get(_identity(item, merge_key))
        if before is None:
            if additions:
                entries.append(copy.deepcopy(item))
            continue
        sub = _diff_maps(before, item, item_cursor, additions, deletions)
        if sub and retain:
            sub[RETAIN_KEYS] = sorted(item)
        if sub:
            entries.append({merge_key: item.get(merge_key), **sub})
    if deletions:
        entries += [{merge_key: i.get(merge_key), PATCH_DIRECTIVE: "delete"}
                    for i in old if _identity(i, merge_key) not in new_keys]
    order_changed = [_identity(i, merge_key) for i in old if _identity(i, merge_key) in new_keys] != \
        [_identity(i, merge_key) for i in new if _identity(i, merge_key) in old_by_key]
    patch = {key: entries} if entries else {}
    if additions and (entries or order_changed):
        patch[SET_ORDER + key] = [{merge_key: i.get(merge_key)} for i in new]
    return patch


def _combine(first: dict, second: dict, cursor: SchemaCursor) -> dict:
    """Merge two patches into one (the second wins on conflicts; keyed lists join by key)."""
    result = copy.deepcopy(first)
    for key, value in second.items():
        child, meta = cursor.field(key)
        existing = result.get(key, _MISSING)
        if isinstance(existing, dict) and isinstance(value, dict):
            result[key] = _combine(existing, value, child)
        elif isinstance(existing, list) and isinstance(value, list) and meta.merge_key:
            result[key] = _combine_keyed(existing, value, child.item(), meta.merge_key)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _combine_keyed(first: list, second: list, item_cursor, merge_key: str) -> list:
    result = copy.deepcopy(first)
    for item in second:
        same = [n for n, old in enumerate(result) if isinstance(old, dict) and isinstance(item, dict)
                and old.get(merge_key) == item.get(merge_key)]
        if same:
            result[same[0]] = _combine(result[same[0]], item, item_cursor)
        else:
            result.append(copy.deepcopy(item))
    return result
