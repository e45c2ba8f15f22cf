"""A JSON-schema checker compiled to Python closures, for the subset of JSON schema that the
Kubernetes schemas use (type, properties, required, additionalProperties, items, oneOf, enum,
$ref; format and descriptions are annotations).

Why not jsonschema alone: its generic interpreter costs ~0.8 ms per typical Pod on this
machine (most of it in per-keyword descend/evolve); these closures do the same checks in a
fraction of that. `compile_schema` raises UnsupportedSchema on any other assertion keyword,
and the caller then uses jsonschema (a differential test keeps the two in agreement).

A check appends problems to a `Problems` and never raises on bad input.
"""

from __future__ import annotations

import re
from typing import Callable

from pkube.api import causes

_ANNOTATIONS = frozenset({
    "description", "format", "$schema", "$id", "x-kubernetes-group-version-kind",
    "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-patch-merge-key", "x-kubernetes-patch-strategy", "x-kubernetes-unions",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "default",
})
_ASSERTIONS = frozenset({"type", "properties", "required", "additionalProperties", "items", "oneOf",
                         "enum", "$ref"})
_DEFS_PREFIX = "#/$defs/"

Check = Callable[[object, tuple, "Problems"], None]


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this compiler does not implement."""


class Problems:
    """What a check found: StatusCauses and the paths of unknown fields."""

    def __init__(self):
        self.causes: list[dict] = []
        self.unknown: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.causes or self.unknown)


def field_path(parts) -> str:
    """`("spec", "containers", 0, "name")` → `spec.containers[0].name`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_tokens(path: str) -> list:
    """The inverse of `field_path`: `spec.containers[0].name` → `["spec", "containers", 0, "name"]`."""
    return [int(index) if index else name for name, index in _TOKEN.findall(path)]


def json_type(value) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def type_problem(path: tuple, value, expected: list[str]) -> dict:
    """The cause for a value of the wrong JSON type (message as the apiserver words it)."""
    where = field_path(path)
    wanted = " or ".join(t for t in expected if t != "null") or "valid"
    return causes.type_invalid(where, value, f'{where} in body must be of type {wanted}: "{json_type(value)}"')


_PLAIN_TYPES = {"null": type(None), "string": str, "object": dict, "array": list}


def _type_test(names: list[str]) -> Callable[[object], bool]:
    """A test of a value against JSON type names (Kubernetes' int-or-float "integer" included)."""
    if set(names) <= set(_PLAIN_TYPES):
        plain = tuple(_PLAIN_TYPES[name] for name in names)
        return lambda v: isinstance(v, plain)
    tests = []
    for name in names:
        tests.append({
            "null": lambda v: v is None,
            "boolean": lambda v: isinstance(v, bool),
            "string": lambda v: isinstance(v, str),
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, float) and v.is_integer()),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        }[name])
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


class Compiler:
    """Compiles schemas whose `$ref`s point into one `$defs` table (shared across kinds)."""

    def __init__(self, definitions: dict):
        self.definitions = definitions
        self._refs: dict[str, Check] = {}
        self._compiled_defs: dict[str, Check] = {}

    def compile(self, schema: dict) -> Check:
        """A check for `schema`; raises UnsupportedSchema."""
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"schema must be an object, not {schema!r}")
        unknown = set(schema) - _ASSERTIONS - _ANNOTATIONS
        if unknown:
            raise UnsupportedSchema(f"unsupported keywords {sorted(unknown)}")
        if "$ref" in schema:
            return self._ref(schema["$ref"])
        if _is_leaf(schema):
            return self._leaf(schema)
        checks = [c for c in (self._type(schema), self._enum(schema), self._object(schema),
                              self._array(schema), self._one_of(schema)) if c is not None]
        if len(checks) == 2 and _single_plain_type(schema):
            return _typed(schema["type"], checks[1])
        return _sequence(checks, "type" in schema)

    def _ref(self, ref: str) -> Check:
        """The check of a definition: itself once compiled; while it is being compiled
        (a recursive schema), a forwarder to it."""
        if _DEFS_PREFIX not in ref:
            raise UnsupportedSchema(f"unsupported $ref {ref!r}")
        name = ref[ref.index(_DEFS_PREFIX) + len(_DEFS_PREFIX):]
        if name in self._compiled_defs:
            return self._compiled_defs[name]
        if name not in self._refs:
            if name not in self.definitions:
                raise UnsupportedSchema(f"$ref to a missing definition {name!r}")
            cell: list[Check] = []
            self._refs[name] = lambda value, path, out: cell[0](value, path, out)  # recursion-safe
            cell.append(self.compile(self.definitions[name]))
            self._compiled_defs[name] = cell[0]
        return self._refs[name]

    @staticmethod
    def _leaf(schema: dict) -> Check:
        """A schema asserting only a type: one call per value."""
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        test = _type_test(names)

        def check_leaf(value, path, out):
            if value is not None and not test(value):
                out.causes.append(type_problem(path, value, names))
        return check_leaf

    @staticmethod
    def _type(schema: dict):
        if "type" not in schema:
            return None
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        test = _type_test(names)

        def check_type(value, path, out):
            if value is None:
                return False  # null is "not set" to Kubernetes' decoder
            if not test(value):
                out.causes.append(type_problem(path, value, names))
                return False
            return True
        return check_type

    @staticmethod
    def _enum(schema: dict):
        if "enum" not in schema:
            return None
        allowed = schema["enum"]

        def check_enum(value, path, out):
            if value is not None and value not in allowed:
                out.causes.append(causes.not_supported(field_path(path), value, allowed))
        return check_enum

    def _object(self, schema: dict):
        properties = {k: self.compile(v) for k, v in (schema.get("properties") or {}).items()}
        required = list(schema.get("required") or [])
        extra = schema.get("additionalProperties", True)
        extra_check = self.compile(extra) if isinstance(extra, dict) else None
        if not properties and not required and extra is True:
            return None

        def check_object(value, path, out):
            if not isinstance(value, dict):
                return
            for name in required:
                if name not in value:
                    out.causes.append(causes.required(field_path(path + (name,))))
            for key, item in value.items():
                check = properties.get(key)
                if check is not None:
                    check(item, path + (key,), out)
                elif extra_check is not None:
                    extra_check(item, path + (key,), out)
                elif extra is False:
                    out.unknown.append(field_path(path + (key,)))
        return check_object

    def _array(self, schema: dict):
        if not isinstance(schema.get("items"), dict):
            return None
        item_check = self.compile(schema["items"])

        def check_array(value, path, out):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    item_check(item, path + (index,), out)
        return check_array

    def _one_of(self, schema: dict):
        if "oneOf" not in schema:
            return None
        options = [self.compile(option) for option in schema["oneOf"]]
        expected = [t for option in schema["oneOf"] for t in _types_of(option)]

        def check_one_of(value, path, out):
            if value is None:
                return  # null is "not set" to Kubernetes' decoder
            matched = 0
            for option in options:
                trial = Problems()
                option(value, path, trial)
                matched += not trial
            if matched != 1:
                out.causes.append(type_problem(path, value, expected))
        return check_one_of


def _single_plain_type(schema: dict) -> bool:
    return isinstance(schema.get("type"), str) and schema["type"] in _PLAIN_TYPES


def _typed(name: str, check: Check) -> Check:
    """``check`` after a test of the one plain type ``name`` (one call per value, not three)."""
    kind = _PLAIN_TYPES[name]

    def check_typed_fused(value, path, out):
        if value is None:
            return  # null is "not set" to Kubernetes' decoder
        if not isinstance(value, kind):
            out.causes.append(type_problem(path, value, [name]))
            return
        check(value, path, out)
    return check_typed_fused


def _is_leaf(schema: dict) -> bool:
    """Only "type" among the assertions (and not an object with properties to check)."""
    return "type" in schema and not (set(schema) & (_ASSERTIONS - {"type"}))


def _types_of(schema) -> list[str]:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return [t for t in (kind if isinstance(kind, list) else [kind]) if t]


def _sequence(checks: list, has_type: bool) -> Check:
    """Run the checks in order; after a failed type check the others are skipped."""
    if has_type:
        type_check, rest = checks[0], checks[1:]

        def check_typed(value, path, out):
            if type_check(value, path, out):
                for check in rest:
                    check(value, path, out)
        return check_typed
    if len(checks) == 1:
        return checks[0]

    def check_all(value, path, out):
        for check in checks:
            check(value, path, out)
    return check_all
