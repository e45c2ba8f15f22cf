"""Objects walked with their FieldTypes: the operations server-side apply is made of
(structured-merge-diff's ``typed`` package, on plain JSON values).

- ``field_set(value, type)``: the set of fields a configuration specifies (what an applier owns);
- ``compare(old, new, type)``: the fields added, modified and removed between two objects
  (what an update takes ownership of, and what conflicts with other managers);
- ``merge(live, config, type)``: a configuration applied onto a live object;
- ``remove_items(value, set, type)``: a value without the members of a set (pruning);
- ``ensure_named_fields(set, type)``: a set whose struct fields on the way to a member are
  members too (so pruning takes a struct whose every field went).

Values are never mutated; results share unchanged subvalues with the inputs.
"""

from __future__ import annotations

from typing import NamedTuple

from pkube.api import fieldpath
from pkube.api.fieldpath import field_element, is_member
from pkube.api.fieldtypes import LIST, MAP, SCALAR, STRUCT, FieldType

MISSING = object()
_COMPOSITE = (dict, list)  # the classes of values that may have fields below them


def _shape(value, node: FieldType) -> str:
    """How ``value`` is walked: SCALAR (a leaf: scalars, atomics, shape mismatches), MAP or LIST."""
    kind = node.kind_of(value)
    if node.atomic or kind == SCALAR:
        return SCALAR
    if kind in (STRUCT, MAP):
        return MAP if isinstance(value, dict) else SCALAR
    if kind == LIST:
        return LIST if isinstance(value, list) else SCALAR
    return SCALAR


# ---- the set a configuration specifies ---------------------------------------------------------

def field_set(value: dict, node: FieldType) -> dict:
    """Every field ``value`` sets, as Kubernetes' ToFieldSet counts them: leaves, list items
    (with ``.`` when they have fields), map entries, empty objects and nulls."""
    below = _below(value, node)
    return below or {}


def _below(value, node: FieldType):
    """The subtree under a value: None for a leaf."""
    if value is None:
        return None
    shape = _shape(value, node)
    if shape == MAP:
        return _map_set(value, node)
    if shape == LIST:
        return _list_set(value, node)
    return None


def _map_set(value: dict, node: FieldType) -> dict:
    tree = {}
    for key, child in value.items():
        if child.__class__ not in _COMPOSITE:
            tree["f:" + key] = {}
            continue
        child_type, declared = node.child(key)
        sub = _below(child, child_type)
        element = field_element(key)
        if sub is None or (isinstance(child, dict) and not child):
            tree[element] = {}
        elif not declared:
            tree[element] = {".": {}, **sub} if sub else {}
        elif sub:
            tree[element] = sub
    return tree


def _list_set(value: list, node: FieldType) -> dict:
    tree = {}
    item_type = node.item
    for index, item in enumerate(value):
        sub = _below(item, item_type)
        tree[node.element(item, index)] = {".": {}, **sub} if sub else {}
    return tree


# ---- comparing two objects ---------------------------------------------------------------------

class Comparison(NamedTuple):
    added: dict
    modified: dict
    removed: dict

    def changed(self) -> dict:
        """Added or modified: what an update takes over."""
        return fieldpath.union(self.added, self.modified)

    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


def compare(old: dict, new: dict, node: FieldType) -> Comparison:
    """The fields added, modified and removed from ``old`` to ``new`` (Kubernetes' Compare:
    an object, list or item that appears or goes is itself in the set, with its fields)."""
    added, modified, removed = {}, {}, {}
    _compare_children(old, new, node, _shape(new, node), added, modified, removed)
    return Comparison(added, modified, removed)


def _compare(old, new, node: FieldType, element: str, added: dict, modified: dict, removed: dict) -> None:
    """Compare one child (``element``) into the parent's three levels."""
    if old is MISSING:
        added[element] = whole(new, node)
        return
    if new is MISSING:
        removed[element] = whole(old, node)
        return
    shape = _shape(new if new is not None else old, node)
    if shape == SCALAR or _both_empty(old, new):
        if old != new or type(old) is not type(new):
            modified[element] = {}
        return
    a, m, r = {}, {}, {}
    _compare_children(old, new, node, shape, a, m, r)
    if a:
        added[element] = a
    if m:
        modified[element] = m
    if r:
        removed[element] = r


def _compare_children(old, new, node: FieldType, shape: str, a: dict, m: dict, r: dict) -> None:
    if shape == MAP:
        old_map = old if isinstance(old, dict) else {}
        new_map = new if isinstance(new, dict) else {}
        for key, value in new_map.items():
            before = old_map.get(key, MISSING)
            if before is value or before == value:
                continue
            if before is MISSING and value.__class__ not in _COMPOSITE:
                a["f:" + key] = {}
            elif before.__class__ not in _COMPOSITE and value.__class__ not in _COMPOSITE and before is not MISSING:
                m["f:" + key] = {}
            else:
                _compare(before, value, node.child(key)[0], "f:" + key, a, m, r)
        for key, value in old_map.items():
            if key not in new_map:
                _compare(value, MISSING, node.child(key)[0], field_element(key), a, m, r)
    elif shape == LIST:
        old_items = _indexed(old if isinstance(old, list) else [], node)
        new_items = _indexed(new if isinstance(new, list) else [], node)
        item_type = node.item
        for element, value in new_items.items():
            before = old_items.get(element, MISSING)
            if before is not value and before != value:
                _compare(before, value, item_type, element, a, m, r)
        for element, value in old_items.items():
            if element not in new_items:
                _compare(value, MISSING, item_type, element, a, m, r)


def whole(value, node: FieldType) -> dict:
    """The subtree of a value that appears or goes as a whole: itself and, for an object or a
    list that is not a leaf, every field and item below it (levels in canonical order)."""
    if node.leaf:
        return {}
    if isinstance(value, dict):
        if not value or node.kind == LIST:
            return {}
        tree = {".": {}}
        child = node.child
        for key in sorted(value):
            item = value[key]
            tree["f:" + key] = whole(item, child(key)[0]) if item.__class__ in _COMPOSITE else {}
        return tree
    if isinstance(value, list) and value and node.kind == LIST:
        item_type, element = node.item, node.element
        items = {element(item, index): whole(item, item_type) for index, item in enumerate(value)}
        return {".": {}, **{e: items[e] for e in sorted(items)}}
    return {}


def _both_empty(old, new) -> bool:
    return not old and not new


def _indexed(items: list, node: FieldType) -> dict:
    """A list's items by path element (a duplicate keeps its first occurrence)."""
    out = {}
    for index, item in enumerate(items):
        out.setdefault(node.element(item, index), item)
    return out


# ---- applying a configuration ------------------------------------------------------------------

def merge(live, config, node: FieldType):
    """``config`` applied onto ``live``: the config's values win; structs and maps merge by
    field, map lists by key and set lists by value (in Kubernetes' order); the rest is replaced."""
    if live is MISSING or live is None:
        return config
    if config is MISSING:
        return live
    shape = _shape(config, node)
    if shape == MAP and isinstance(live, dict):
        out = dict(live)
        for key, value in config.items():
            out[key] = merge(live.get(key, MISSING), value, node.child(key)[0])
        return out
    if shape == LIST and isinstance(live, list) and node.relation in ("map", "set"):
        return _merge_lists(live, config, node)
    return config


def _merge_lists(live: list, config: list, node: FieldType) -> list:
    """Items of both merged; live-only items keep their place, shared ones follow the config's
    order (structured-merge-diff's list merge)."""
    left = [node.element(item, i) for i, item in enumerate(live)]
    right = [node.element(item, i) for i, item in enumerate(config)]
    left_items, right_items = dict(zip(left, live)), dict(zip(right, config))
    shared = iter([e for e in right if e in left_items] + [None])
    next_shared = next(shared)
    out, done = [], set()
    li = ri = 0
    item_type = node.item
    while li < len(left) or ri < len(right):
        if li < len(left) and ri < len(right):
            element = left[li]
            if element == right[ri]:
                out.append(merge(left_items[element], right_items[element], item_type))
                done.add(element)
                li, ri = li + 1, ri + 1
                next_shared = next(shared, None)
                continue
            if element in right_items and next_shared is not None and next_shared != element:
                li += 1
                continue
        if li < len(left):
            element = left[li]
            if element not in right_items:
                out.append(live[li])
                li += 1
                continue
            if element in done:
                li += 1
                continue
        if ri < len(right):
            element = right[ri]
            done.add(element)
            out.append(merge(left_items.get(element, MISSING), right_items[element], item_type))
            ri += 1
            if next_shared == element:
                next_shared = next(shared, None)
    return out


# ---- pruning -----------------------------------------------------------------------------------

def remove_items(value, removal: dict, node: FieldType):
    """``value`` without the members of ``removal`` (MISSING when nothing is left of it)."""
    if not removal:
        return value
    shape = _shape(value, node)
    if shape == MAP:
        out = {}
        for key, child in value.items():
            sub = removal.get(field_element(key))
            if sub is None:
                out[key] = child
            elif not is_member(sub):
                kept = remove_items(child, sub, node.child(key)[0])
                if kept is not MISSING:
                    out[key] = kept
        return out if out else MISSING
    if shape == LIST:
        out = []
        item_type = node.item
        for index, item in enumerate(value):
            sub = removal.get(node.element(item, index))
            if sub is None:
                out.append(item)
            elif not is_member(sub):
                kept = remove_items(item, sub, item_type)
                if kept is not MISSING:
                    out.append(kept)
        return out if out else MISSING
    return value


def ensure_named_fields(tree: dict, node: FieldType) -> dict:
    """``tree`` with every declared struct field that has members below it made a member."""
    out = {}
    for element, sub in tree.items():
        if element == ".":
            out[element] = sub
            continue
        below = fieldpath.children(sub)
        if not below:
            out[element] = sub
            continue
        if element.startswith("f:"):
            child_type, declared = node.child(element[2:])
            named = declared and node.kind == STRUCT
        else:
            child_type, named = node.item, False
        inner = ensure_named_fields(below, child_type)
        out[element] = {".": {}, **inner} if (named or is_member(sub)) else inner
    return out
