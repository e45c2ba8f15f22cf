"""kubectl's JSONPath templates: ``-o jsonpath=...``, ``custom-columns`` and ``--sort-by``;
the apiserver evaluates CRDs' additionalPrinterColumns with it too.

The dialect is kubectl's (k8s.io/client-go/util/jsonpath), not RFC 9535:
literal text around ``{...}`` blocks, ``{range EXPR}...{end}``, quoted
literals (``{"\\n"}``), paths ``.a.b``, ``..name`` (recursive), ``[*]``,
``[0]``, ``[-1]``, ``[1:3]``, ``['key.with.dots']``, unions ``[0,2]`` and
filters ``[?(@.type=="Ready")]``. As in ``kubectl -o jsonpath``, a missing key
yields nothing rather than an error. Strings print raw, booleans as
``true``/``false``, maps and lists as JSON; several results of one block are
separated by a space.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union


class JSONPathError(ValueError):
    """A template that cannot be parsed."""


# ---------------------------------------------------------------- path steps

@dataclass(frozen=True)
class Field:
    name: str  # "*" for every value


@dataclass(frozen=True)
class Recursive:
    name: str


@dataclass(frozen=True)
class Index:
    items: tuple  # ints or strings (keys)


@dataclass(frozen=True)
class Slice:
    start: Optional[int]
    stop: Optional[int]
    step: Optional[int]


@dataclass(frozen=True)
class Filter:
    path: tuple
    op: Optional[str]
    value: Any


Step = Union[Field, Recursive, Index, Slice, Filter]
_FILTER_RE = re.compile(r"^\s*(@[^=!<>\s]*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$")
_FIELD_RE = re.compile(r"(?:\\.|[^.\[\]\s\\])+")


def parse_path(text: str) -> tuple[Step, ...]:
    """``.items[*].metadata.name`` (optionally starting with ``$`` or ``@``) as steps."""
    text = text.strip()
    if text[:1] in ("$", "@"):
        text = text[1:]
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        if text.startswith("..", pos):
            match = _FIELD_RE.match(text, pos + 2)
            if not match:
                raise JSONPathError(f"expected a field name after '..' in {text!r}")
            steps.append(Recursive(_unescape_field(match.group())))
            pos = match.end()
        elif text[pos] == ".":
            match = _FIELD_RE.match(text, pos + 1)
            if match:
                steps.append(Field(_unescape_field(match.group())))
                pos = match.end()
            else:
                pos += 1  # a lone "." is the current object
        elif text[pos] == "[":
            end = _matching_bracket(text, pos)
            steps.append(_parse_bracket(text[pos + 1:end]))
            pos = end + 1
        else:
            match = _FIELD_RE.match(text, pos)
            if not match:
                raise JSONPathError(f"unexpected {text[pos]!r} in {text!r}")
            steps.append(Field(match.group()))
            pos = match.end()
    return tuple(steps)


def _unescape_field(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _matching_bracket(text: str, start: int) -> int:
    depth, quote = 0, None
    for pos in range(start, len(text)):
        char = text[pos]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return pos
    raise JSONPathError(f"unclosed '[' in {text!r}")


def _parse_bracket(inner: str) -> Step:
    inner = inner.strip()
    if inner == "*":
        return Field("*")
    if inner.startswith("?(") and inner.endswith(")"):
        return _parse_filter(inner[2:-1])
    if ":" in inner and not inner.startswith(("'", '"')):
        parts = [p.strip() for p in inner.split(":")]
        numbers = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
        return Slice(*numbers[:3])
    return Index(tuple(_literal(part.strip()) for part in inner.split(",")))


def _parse_filter(text: str) -> Filter:
    match = _FILTER_RE.match(text)
    if not match:
        raise JSONPathError(f"cannot parse filter {text!r}")
    path, op, value = match.groups()
    return Filter(parse_path(path), op, _literal(value) if op else None)


def _literal(token: str):
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return {"true": True, "false": False, "null": None}.get(token, token)


def evaluate(steps: Iterable[Step], data: Any) -> list:
    """Every value the steps reach from ``data`` (missing keys reach nothing)."""
    current = [data]
    for step in steps:
        current = [found for node in current for found in _apply(step, node)]
    return current


def _apply(step: Step, node: Any) -> list:
    if isinstance(step, Field):
        if step.name == "*":
            return list(node.values()) if isinstance(node, dict) else list(node) if isinstance(node, list) else []
        return [node[step.name]] if isinstance(node, dict) and step.name in node else []
    if isinstance(step, Recursive):
        return list(_descend(node, step.name))
    if isinstance(step, Index):
        return [v for item in step.items for v in _index(node, item)]
    if isinstance(step, Slice):
        return node[step.start:step.stop:step.step] if isinstance(node, list) else []
    return [item for item in (node if isinstance(node, list) else []) if _passes(step, item)]


def _index(node: Any, item) -> list:
    if isinstance(node, list) and isinstance(item, int):
        return [node[item]] if -len(node) <= item < len(node) else []
    if isinstance(node, dict) and str(item) in node:
        return [node[str(item)]]
    return []


def _descend(node: Any, name: str) -> Iterable:
    if isinstance(node, dict):
        if name == "*":
            yield from node.values()
        elif name in node:
            yield node[name]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return
    for child in children:
        yield from _descend(child, name)


_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _passes(flt: Filter, item: Any) -> bool:
    found = evaluate(flt.path, item)
    if flt.op is None:
        return bool(found)
    try:
        return any(_COMPARE[flt.op](value, flt.value) for value in found)
    except TypeError:
        return False


# ---------------------------------------------------------------- templates

@dataclass
class Node:
    """One piece of a template: text, a path, or a range with children."""

    kind: str  # "text", "path", "range"
    text: str = ""
    steps: tuple = ()
    children: list = field(default_factory=list)


def parse_template(template: str) -> list[Node]:
    """The template's nodes; ``{range}`` blocks nest until their ``{end}``."""
    root: list[Node] = []
    stack = [root]
    for literal, expr in _split_blocks(template):
        if literal:
            stack[-1].append(Node("text", text=literal))
        if expr is None:
            continue
        expr = expr.strip()
        if expr.startswith("range ") or expr == "range":
            node = Node("range", steps=parse_path(expr[5:]))
            stack[-1].append(node)
            stack.append(node.children)
        elif expr == "end":
            if len(stack) == 1:
                raise JSONPathError("{end} without {range}")
            stack.pop()
        elif len(expr) >= 2 and expr[0] == expr[-1] == '"':
            stack[-1].append(Node("text", text=_unescape(expr[1:-1])))
        else:
            stack[-1].append(Node("path", steps=parse_path(expr)))
    if len(stack) != 1:
        raise JSONPathError("{range} without {end}")
    return root


def _split_blocks(template: str) -> Iterable[tuple[str, Optional[str]]]:
    pos = 0
    while pos < len(template):
        start = template.find("{", pos)
        if start < 0:
            yield template[pos:], None
            return
        end = _block_end(template, start)
        yield template[pos:start], template[start + 1:end]
        pos = end + 1


def _block_end(template: str, start: int) -> int:
    quote = None
    for pos in range(start + 1, len(template)):
        char = template[pos]
        if quote:
            if char == "\\":
                continue
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "}":
            return pos
    raise JSONPathError(f"unclosed '{{' in template {template!r}")


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape")


def render(template: str, data: Any) -> str:
    """The template applied to ``data``, as kubectl -o jsonpath prints it."""
    return _render_nodes(parse_template(template), data)


def _render_nodes(nodes: list[Node], data: Any) -> str:
    out = []
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "path":
            out.append(" ".join(format_value(v) for v in evaluate(node.steps, data)))
        else:
            out.extend(_render_nodes(node.children, item) for item in _range_items(node.steps, data))
    return "".join(out)


def _range_items(steps: tuple, data: Any) -> list:
    found = evaluate(steps, data)
    if len(found) == 1 and isinstance(found[0], list):
        return found[0]
    return found


def format_value(value: Any) -> str:
    """One result as kubectl prints it: raw strings, JSON for maps and lists."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def path_expression(text: str) -> str:
    """A user's ``.metadata.name`` or ``{.metadata.name}`` as a bare path."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text


def values_at(path: str, data: Any) -> list:
    """The values one bare path reaches (custom-columns, sort-by)."""
    return evaluate(parse_path(path_expression(path)), data)
