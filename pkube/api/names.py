"""Syntax checks for names, label keys and values, as Kubernetes' apimachinery validation does.

Every check returns a list of problem messages (empty when the value is fine), worded like
Kubernetes' own (`k8s.io/apimachinery/pkg/util/validation`), so that callers can prefix them
with `Invalid value: "x": ` and report them unchanged.
"""

from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63

_DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + r")*"
_DNS1035_LABEL_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = r"(" + _QUALIFIED_NAME_FMT + r")?"

_WILDCARD_DNS1123_SUBDOMAIN_FMT = r"\*\." + _DNS1123_SUBDOMAIN_FMT

DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
WILDCARD_DNS1123_SUBDOMAIN_RE = re.compile(_WILDCARD_DNS1123_SUBDOMAIN_FMT)
DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035_LABEL_FMT}')"
)
WILDCARD_DNS1123_SUBDOMAIN_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
    "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
    f"character (e.g. '*.example.com', regex used for validation is '{_WILDCARD_DNS1123_SUBDOMAIN_FMT}')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{_QUALIFIED_NAME_FMT}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)


def _max_len_msg(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _pattern_problems(value: str, limit: int, pattern: re.Pattern, message: str) -> list[str]:
    """Kubernetes' usual pair: too long, then not matching the format (both may be given)."""
    problems = [_max_len_msg(limit)] if len(value) > limit else []
    return problems + ([message] if not pattern.fullmatch(value) else [])


def dns1123_label(value: str) -> list[str]:
    """Problems of `value` as an RFC 1123 label (Namespace names, container names)."""
    return _pattern_problems(value, DNS1123_LABEL_MAX, DNS1123_LABEL_RE, DNS1123_LABEL_MSG)


def dns1123_subdomain(value: str) -> list[str]:
    """Problems of `value` as an RFC 1123 subdomain (most object names)."""
    return _pattern_problems(value, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_RE, DNS1123_SUBDOMAIN_MSG)


def wildcard_dns1123_subdomain(value: str) -> list[str]:
    """Problems of `value` as `*.` and an RFC 1123 subdomain (an Ingress rule's or TLS host)."""
    return _pattern_problems(value, DNS1123_SUBDOMAIN_MAX, WILDCARD_DNS1123_SUBDOMAIN_RE,
                             WILDCARD_DNS1123_SUBDOMAIN_MSG)


def path_segment_name(value: str) -> list[str]:
    """Problems of `value` as a path segment (RBAC object names, such as `system:node`)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def dns1035_label(value: str) -> list[str]:
    """Problems of `value` as an RFC 1035 label (Service names)."""
    return _pattern_problems(value, DNS1123_LABEL_MAX, DNS1035_LABEL_RE, DNS1035_LABEL_MSG)


def qualified_name(value: str) -> list[str]:
    """Problems of `value` as a qualified name `[prefix/]name` (label and annotation keys)."""
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return [
            "a qualified name " + QUALIFIED_NAME_MSG.removeprefix("name part ")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    problems = [f"prefix part {msg}" for msg in dns1123_subdomain(prefix)] if prefix else []
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        problems.append("name part " + _max_len_msg(QUALIFIED_NAME_MAX))
    if name and not QUALIFIED_NAME_RE.fullmatch(name):
        problems.append(QUALIFIED_NAME_MSG)
    return problems


def label_value(value: str) -> list[str]:
    """Problems of `value` as a label value (may be empty)."""
    problems = []
    if len(value) > LABEL_VALUE_MAX:
        problems.append(_max_len_msg(LABEL_VALUE_MAX))
    if not LABEL_VALUE_RE.fullmatch(value):
        problems.append(LABEL_VALUE_MSG)
    return problems
