"""StatusCause values (`{"reason", "message", "field"}`) worded like Kubernetes' field.Error.

`message` is the body of the error without the field (`Invalid value: "x": detail`), as the
apiserver puts it in `Status.details.causes[].message`; `format_invalid` joins them the way
Kubernetes writes `Status.message` for a 422.
"""

from __future__ import annotations

import json

Cause = dict

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_FOUND = "FieldValueNotFound"


def show(value) -> str:
    """A value as Kubernetes prints it in messages: strings quoted, numbers bare, rest as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def make(reason: str, field: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": field}


def required(field: str, detail: str = "") -> Cause:
    return make(REQUIRED, field, "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value, detail: str) -> Cause:
    return make(INVALID, field, f"Invalid value: {show(value)}: {detail}")


def type_invalid(field: str, value, detail: str) -> Cause:
    return make(TYPE_INVALID, field, f"Invalid value: {show(value)}: {detail}")


def not_supported(field: str, value, supported) -> Cause:
    choices = ", ".join(show(choice) for choice in supported)
    return make(NOT_SUPPORTED, field, f"Unsupported value: {show(value)}: supported values: {choices}")


def duplicate(field: str, value) -> Cause:
    return make(DUPLICATE, field, f"Duplicate value: {show(value)}")


def forbidden(field: str, detail: str) -> Cause:
    return make(FORBIDDEN, field, f"Forbidden: {detail}")


def too_long(field: str, limit: int, unit: str = "bytes") -> Cause:
    return make(TOO_LONG, field, f"Too long: must have at most {limit} {unit}")


def not_found(field: str, value) -> Cause:
    return make(NOT_FOUND, field, f"Not found: {show(value)}")


def format_invalid(kind: str, name: str, causes: list[Cause]) -> str:
    """`Pod "x" is invalid: spec.a: Required value` (several causes in brackets, like Go's)."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return f'{kind} "{name}" is invalid: {body}'
