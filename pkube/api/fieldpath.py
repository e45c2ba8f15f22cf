"""Sets of field paths in Kubernetes' FieldsV1 encoding (structured-merge-diff's `fieldpath.Set`).

A set is held as the very JSON a ``managedFields`` entry carries in ``fieldsV1``, so decoding
and encoding cost nothing: a dict from path element to the subtree below it, where

- a path element is ``f:<field name>``, ``k:<json object of the key fields>`` (an item of a
  list of type map), ``v:<json value>`` (an item of a list of type set) or ``i:<index>``;
- a subtree that is ``{}`` is a member with nothing below it, and a subtree holding the key
  ``"."`` is a member that also has children; any other subtree only has members below it.

The root is never a member itself. Every function here is pure: it returns new dicts and
shares no mutable subtree with its inputs' callers' future edits only by copying what it keeps
(subtrees kept whole are shared; callers treat sets as immutable).
"""

from __future__ import annotations

import json
from json.encoder import py_encode_basestring
from typing import Iterator, Optional

_quote = getattr(json.encoder, "c_encode_basestring", None) or py_encode_basestring
SELF = "."
FIELD, KEY, VALUE, INDEX = "f:", "k:", "v:", "i:"


def field_element(name: str) -> str:
    return FIELD + name


def key_element(fields: dict) -> str:
    """The element of a map-list item from its key fields, sorted by name as Kubernetes does."""
    if len(fields) == 1:
        (name, value), = fields.items()
        if isinstance(value, str):                      # the common case, without json.dumps
            return f'k:{{{_quote(name)}:{_quote(value)}}}'
    return KEY + json.dumps({name: fields[name] for name in sorted(fields)}, separators=(",", ":"),
                            ensure_ascii=False)


def value_element(value) -> str:
    return VALUE + json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def index_element(index: int) -> str:
    return f"{INDEX}{index}"


def is_member(subtree: dict) -> bool:
    """True when the path leading to ``subtree`` is itself in the set."""
    return not subtree or SELF in subtree


def children(subtree: dict) -> dict:
    """``subtree`` without its own membership marker."""
    return {k: v for k, v in subtree.items() if k != SELF} if SELF in subtree else subtree


def _node(member: bool, below: dict) -> Optional[dict]:
    """The subtree of a path from its membership and children; None when it holds nothing."""
    if below:
        return {SELF: {}, **below} if member else below
    return {} if member else None


def union(a: dict, b: dict) -> dict:
    """Every path in ``a`` or ``b``."""
    if not a:
        return b
    if not b:
        return a
    out = dict(a)
    for element, sub in b.items():
        if element == SELF:
            continue
        mine = out.get(element)
        if mine is None:
            out[element] = sub
        elif mine is not sub:
            out[element] = _node(is_member(mine) or is_member(sub), union(children(mine), children(sub)))
    return out


def difference(a: dict, b: dict) -> dict:
    """The paths of ``a`` not in ``b`` (members only: b's member ``x`` leaves a's ``x.y``)."""
    if not a or not b:
        return a
    out = {}
    for element, sub in a.items():
        if element == SELF:
            continue
        other = b.get(element)
        if other is None:
            out[element] = sub
            continue
        node = _node(is_member(sub) and not is_member(other), difference(children(sub), children(other)))
        if node is not None:
            out[element] = node
    return out


def intersection(a: dict, b: dict) -> dict:
    """The paths in both ``a`` and ``b``."""
    if not a or not b:
        return {}
    out = {}
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    for element, sub in small.items():
        other = large.get(element)
        if other is None or element == SELF:
            continue
        node = _node(is_member(sub) and is_member(other), intersection(children(sub), children(other)))
        if node is not None:
            out[element] = node
    return out


def recursive_difference(a: dict, b: dict) -> dict:
    """The paths of ``a`` that are neither in ``b`` nor below a member of ``b``."""
    if not a or not b:
        return a
    out = {}
    for element, sub in a.items():
        if element == SELF:
            continue
        other = b.get(element)
        if other is None:
            out[element] = sub
        elif not is_member(other):
            node = _node(is_member(sub), recursive_difference(children(sub), children(other)))
            if node is not None:
                out[element] = node
    return out


def paths(tree: dict, prefix: tuple = ()) -> Iterator[tuple]:
    """Every member path (a tuple of elements), in Kubernetes' order."""
    for element in sorted_elements(tree):
        sub = tree[element]
        if is_member(sub):
            yield prefix + (element,)
        yield from paths(children(sub), prefix + (element,))


def sorted_elements(tree: dict) -> list[str]:
    """The elements of one level in order: fields by name, then keys, then values (string
    order, as Kubernetes sorts them but for numbers of different lengths inside keys)."""
    return sorted(e for e in tree if e != SELF)


def canonical(tree: dict) -> dict:
    """``tree`` with ``"."`` first and every level sorted: the bytes Kubernetes writes."""
    return {element: canonical(tree[element]) if tree[element] else {} for element in sorted(tree)}


def path_string(path: tuple) -> str:
    """A path as Kubernetes prints it in conflicts: ``.spec.containers[name="app"].image``."""
    return "".join(_element_string(e) for e in path)


def _element_string(element: str) -> str:
    kind, rest = element[:2], element[2:]
    if kind == FIELD:
        return "." + rest
    if kind == KEY:
        fields = json.loads(rest)
        return "[" + ",".join(f"{name}={_value_string(fields[name])}" for name in fields) + "]"
    if kind == VALUE:
        return "[=" + _value_string(json.loads(rest)) + "]"
    return "[" + rest + "]"


def _value_string(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
