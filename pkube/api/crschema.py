"""A custom resource's structural OpenAPI v3 schema at work: defaulting, pruning, validation.

``StructuralSchema(openAPIV3Schema)`` is built once per served CRD version (the schema
is already known structural: pkube/api/crd.py refuses the others) and then used on every
write of an object of that version:

    schema.default(obj)             # fill `default`s in place (missing, or null and not nullable)
    pruned = schema.prune(obj)      # drop unknown fields in place; their paths, for Strict/Warn
    problems = schema.validate(obj) # StatusCauses, worded as Kubernetes' apiextensions-apiserver

What it checks: type (integer, number, string, boolean, object, array), nullable, enum,
pattern, minLength/maxLength, minimum/maximum (and exclusive), multipleOf,
minItems/maxItems, minProperties/maxProperties, required, properties, items,
additionalProperties, allOf/anyOf/oneOf/not, x-kubernetes-int-or-string,
x-kubernetes-preserve-unknown-fields, x-kubernetes-embedded-resource (apiVersion and
kind required, metadata kept) and x-kubernetes-list-type set/map (unique items, unique map
keys), and the string formats date-time, date, byte, uuid, ipv4, ipv6, cidr, mac and
hostname (others pass); on update, problems of unchanged values ratchet. Left out: CEL
rules (x-kubernetes-validations).

The tree is interpreted, not compiled: custom resource schemas are small, and one walk of
a typical object costs tens of microseconds.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
from typing import Callable, Optional

from pkube.api import causes
from pkube.api.jsonvalue import deep_copy
from pkube.api.schema_check import Problems, field_path, json_type, path_tokens

ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_INTEGER = "integer"


class StructuralSchema:
    """One version's openAPIV3Schema. Pure; safe to share between requests."""

    def __init__(self, schema: dict):
        self.schema = _clean(schema)
        self._patterns: dict[str, Optional[re.Pattern]] = {}

    # ---- defaulting

    def default(self, obj: dict) -> dict:
        """Fill in the schema's defaults (in place) and return ``obj``."""
        _default(obj, self.schema)
        return obj

    # ---- pruning

    def prune(self, obj: dict) -> list[str]:
        """Drop fields the schema does not specify (in place); returns their paths.

        apiVersion, kind and metadata at the root are never pruned here."""
        pruned: list[str] = []
        if isinstance(obj, dict):
            _prune_object(obj, self.schema, (), pruned, keep=ROOT_FIELDS)
        return pruned

    # ---- validation

    def validate(self, obj: dict, old: Optional[dict] = None) -> list[dict]:
        """The problems of ``obj`` (apiVersion, kind and metadata excepted), one per field.

        On an update (``old`` given) the problems ratchet, as Kubernetes' CRD validation
        ratcheting does: a problem of a value left unchanged (of the object holding a
        missing required field) is not reported, so tightening a schema does not lock
        existing objects."""
        found = self._problems(obj)
        if old is None:
            return found
        return [c for c in found if not _unchanged(c, obj, old)]

    def _problems(self, obj: dict) -> list[dict]:
        out = Problems()
        body = {k: v for k, v in obj.items() if k not in ROOT_FIELDS}
        root = {k: v for k, v in self.schema.items() if k not in ("required",)}
        required = [name for name in self.schema.get("required") or [] if name not in ROOT_FIELDS]
        if required:
            root["required"] = required
        root["properties"] = {k: v for k, v in (self.schema.get("properties") or {}).items()
                              if k not in ROOT_FIELDS}
        self._check(body, root, (), out)
        return out.causes

    def _check(self, value, schema: dict, path: tuple, out: Problems) -> None:
        if value is None:
            if not schema.get("nullable") and (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
                out.causes.append(_type_cause(path, value, schema))
            return
        if not self._type_ok(value, schema, path, out):
            return
        self._value_checks(value, schema, path, out)
        if isinstance(value, dict):
            self._object(value, schema, path, out)
        elif isinstance(value, list):
            self._array(value, schema, path, out)
        self._junctors(value, schema, path, out)

    @staticmethod
    def _type_ok(value, schema: dict, path: tuple, out: Problems) -> bool:
        if schema.get("x-kubernetes-int-or-string"):
            ok = _is_type(value, _INTEGER) or isinstance(value, str)
        else:
            kind = schema.get("type")
            ok = not kind or _is_type(value, kind)
        if not ok:
            out.causes.append(_type_cause(path, value, schema))
        return ok

    def _value_checks(self, value, schema: dict, path: tuple, out: Problems) -> None:
        if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
            out.causes.append(causes.not_supported(field_path(path), value, schema["enum"]))
        if isinstance(value, str):
            self._string(value, schema, path, out)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            _number(value, schema, path, out)

    def _string(self, value: str, schema: dict, path: tuple, out: Problems) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.causes.append(causes.make(causes.TOO_LONG, field_path(path), _too_long(schema["maxLength"])))
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.causes.append(_invalid(path, value, f"should be at least {schema['minLength']} chars long"))
        pattern = schema.get("pattern")
        if pattern:
            compiled = self._pattern(pattern)
            if compiled is not None and not compiled.search(value):
                out.causes.append(_invalid(path, value, f"should match '{pattern}'"))
        check = STRING_FORMATS.get(schema.get("format"))
        if check is not None and not check(value):
            out.causes.append(_invalid(path, value, f'must be of type {schema["format"]}: "{value}"'))

    def _pattern(self, pattern: str) -> Optional[re.Pattern]:
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(pattern)
            except re.error:
                self._patterns[pattern] = None  # refused when the CRD was written
        return self._patterns[pattern]

    def _object(self, value: dict, schema: dict, path: tuple, out: Problems) -> None:
        for name in schema.get("required") or ():
            if name not in value:
                out.causes.append(causes.required(field_path(path + (name,))))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            out.causes.append(_invalid(path, value, f"should have at least {schema['minProperties']} properties"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.causes.append(_too_many(path, len(value), schema["maxProperties"]))
        if schema.get("x-kubernetes-embedded-resource"):
            for name in ("apiVersion", "kind"):
                if not value.get(name):
                    out.causes.append(causes.required(field_path(path + (name,)), "must not be empty"))
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                self._check(item, properties[key], path + (key,), out)
            elif isinstance(extra, dict):
                self._check(item, extra, path + (key,), out)

    def _array(self, value: list, schema: dict, path: tuple, out: Problems) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.causes.append(_too_many(path, len(value), schema["maxItems"]))
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.causes.append(_invalid(path, value, f"should have at least {schema['minItems']} items"))
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                self._check(item, items, path + (index,), out)
        list_type = schema.get("x-kubernetes-list-type")
        if list_type in ("set", "map"):
            _duplicates(value, list_type, schema.get("x-kubernetes-list-map-keys") or [], path, out)

    def _junctors(self, value, schema: dict, path: tuple, out: Problems) -> None:
        """allOf / anyOf / oneOf / not: value validations over the same value."""
        for branch in schema.get("allOf") or ():
            self._check(value, branch, path, out)
        if schema.get("anyOf") and not schema.get("x-kubernetes-int-or-string"):
            if not any(self._passes(value, branch, path) for branch in schema["anyOf"]):
                out.causes.append(_invalid(path, value, "must validate at least one schema (anyOf)"))
        if schema.get("oneOf"):
            if sum(self._passes(value, branch, path) for branch in schema["oneOf"]) != 1:
                out.causes.append(_invalid(path, value, "must validate one and only one schema (oneOf)"))
        if "not" in schema and self._passes(value, schema["not"], path):
            out.causes.append(_invalid(path, value, "must not validate the schema (not)"))

    def _passes(self, value, schema: dict, path: tuple) -> bool:
        trial = Problems()
        self._check(value, schema, path, trial)
        return not trial.causes


# ---- helpers: types, formats and messages

def _parses(parse) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            parse(text)
        except (ValueError, binascii.Error):
            return False
        return True
    return check


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_MAC = re.compile(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*")
# The string formats Kubernetes checks in custom resources (kube-openapi's strfmt); others pass.
STRING_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": lambda text: _DATE_TIME.fullmatch(text) is not None and _parses(
        lambda t: datetime.datetime.fromisoformat(t.upper().replace("Z", "+00:00").replace(" ", "T")))(text),
    "date": _parses(datetime.date.fromisoformat),
    "byte": _parses(lambda text: base64.b64decode(text, validate=True)),
    "uuid": lambda text: _UUID.fullmatch(text) is not None,
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda text: ipaddress.ip_network(text, strict=False)),
    "mac": lambda text: _MAC.fullmatch(text) is not None,
    "hostname": lambda text: _HOSTNAME.fullmatch(text) is not None,
}


_SCHEMA_MAPS = ("properties",)
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = ("items", "not")


def _clean(schema) -> dict:
    """``schema`` without null keywords, every sub-schema a dict (null means "not set", as
    Kubernetes decodes it), so that the walks only test for presence."""
    if not isinstance(schema, dict):
        return {}
    out = {k: v for k, v in schema.items() if v is not None}
    for key in _SCHEMA_MAPS:
        if key in out:
            out[key] = {name: _clean(sub) for name, sub in out[key].items()} if isinstance(out[key], dict) else {}
    for key in _SCHEMA_LISTS:
        if key in out:
            out[key] = [_clean(sub) for sub in out[key]] if isinstance(out[key], list) else []
    for key in _SCHEMA_VALUES:
        if key in out:
            out[key] = _clean(out[key])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _clean(out["additionalProperties"])
    return out


_PLAIN_TYPES = {"string": str, "boolean": bool, "object": dict, "array": list}


def _is_type(value, kind: str) -> bool:
    """Whether ``value`` (decoded JSON) has the OpenAPI type ``kind``; 1.0 is an integer."""
    if kind == _INTEGER:
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _PLAIN_TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def _type_cause(path: tuple, value, schema: dict) -> dict:
    where = field_path(path)
    wanted = "integer or string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
    return causes.type_invalid(where, value, f'{where} in body must be of type {wanted}: "{json_type(value)}"')


def _same(a, b) -> bool:
    """JSON equality (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def show_number(number) -> str:
    """A bound as Go's %v prints a float64: 1 not 1.0."""
    return str(int(number)) if isinstance(number, float) and number.is_integer() else str(number)


def _too_long(limit: int) -> str:
    return f"Too long: may not be more than {limit} {'byte' if limit == 1 else 'bytes'}"


def _number(value, schema: dict, path: tuple, out: Problems) -> None:
    if "minimum" in schema:
        bound, exclusive = schema["minimum"], schema.get("exclusiveMinimum")
        if value < bound or (exclusive and value == bound):
            relation = "greater than" if exclusive else "greater than or equal to"
            out.causes.append(_invalid(path, value, f"should be {relation} {show_number(bound)}"))
    if "maximum" in schema:
        bound, exclusive = schema["maximum"], schema.get("exclusiveMaximum")
        if value > bound or (exclusive and value == bound):
            relation = "less than" if exclusive else "less than or equal to"
            out.causes.append(_invalid(path, value, f"should be {relation} {show_number(bound)}"))
    factor = schema.get("multipleOf")
    if factor and (value / factor) != int(value / factor):
        out.causes.append(_invalid(path, value, f"should be a multiple of {show_number(factor)}"))


def _duplicates(value: list, list_type: str, keys: list, path: tuple, out: Problems) -> None:
    """x-kubernetes-list-type set (items unique) and map (items unique by their map keys)."""
    seen = []
    for index, item in enumerate(value):
        identity = item if list_type == "set" else (
            {key: item.get(key) for key in keys if key in item} if isinstance(item, dict) else item)
        if any(_same_json(identity, earlier) for earlier in seen):
            out.causes.append(causes.duplicate(field_path(path + (index,)), identity))
        else:
            seen.append(identity)


def _same_json(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return _same(a, b)


def _invalid(path: tuple, value, rule: str) -> dict:
    """``Invalid value: <value>: <field> in body <rule>``, as kube-openapi words a failed rule."""
    where = field_path(path)
    return causes.invalid(where, value, f"{where} in body {rule}")


def _too_many(path: tuple, count: int, limit: int) -> dict:
    return causes.make("FieldValueTooMany", field_path(path), f"Too many: {count}: must have at most {limit} items")


# ---- ratcheting

_MISSING = object()


def _unchanged(cause: dict, new: dict, old: dict) -> bool:
    """True when the value a cause is about (its parent, for a missing required field) is
    equal in ``new`` and ``old``."""
    tokens = path_tokens(cause.get("field") or "")
    if cause.get("reason") == causes.REQUIRED:
        tokens = tokens[:-1]
    before, after = _value_at(old, tokens), _value_at(new, tokens)
    return before is not _MISSING and _same_json(before, after)


def _value_at(obj, tokens: list):
    for token in tokens:
        if isinstance(token, int) and isinstance(obj, list) and 0 <= token < len(obj):
            obj = obj[token]
        elif isinstance(token, str) and isinstance(obj, dict) and token in obj:
            obj = obj[token]
        else:
            return _MISSING
    return obj


# ---- defaulting and pruning walks

def _default(value, schema: dict) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, sub in properties.items():
            if "default" in sub and (name not in value or (value[name] is None and not sub.get("nullable"))):
                value[name] = deep_copy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _default(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


def _prune_object(value: dict, schema: dict, path: tuple, pruned: list[str], keep=()) -> None:
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
    if schema.get("x-kubernetes-embedded-resource"):
        keep = ROOT_FIELDS
    for key in list(value):
        sub = properties.get(key, extra if isinstance(extra, dict) else None)
        if sub is not None:
            _prune(value[key], sub, path + (key,), pruned)
        elif key not in keep and not preserve:
            del value[key]
            pruned.append(field_path(path + (key,)))


def _prune(value, schema: dict, path: tuple, pruned: list[str]) -> None:
    if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
        _prune_object(value, schema, path, pruned)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _prune(item, schema["items"], path + (index,), pruned)
