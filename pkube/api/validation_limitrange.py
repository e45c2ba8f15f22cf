"""Semantic checks and defaults of LimitRanges (core/v1), as Kubernetes'
pkg/apis/core/validation ``ValidateLimitRange`` and pkg/apis/core/v1 ``SetDefaults_LimitRangeItem``
do, with upstream's field paths and words. The LimitRanger admission plugin
(``apiserver/admission_limitranger.py``) applies and enforces them.

The check is registered in ``api.validation_specs.BY_KIND``, the defaults in
``api.defaults._BY_KIND``. Import ``api.validation`` first, not this module: it takes its
helpers from ``validation_specs``.

Differs from upstream in one place: an invalid quantity is shown as the text it was written
as (``Invalid value: "2"``), where kube-apiserver prints the Go struct of the Quantity.
"""

from __future__ import annotations

import math

from pkube.api import causes, names
from pkube.api.quantity import QuantityError, parse_quantity
from pkube.api.validation_specs import _resource_name_ok, as_dict, dict_items

CONTAINER, POD, CLAIM = "Container", "Pod", "PersistentVolumeClaim"
STANDARD_TYPES = (POD, CONTAINER, CLAIM)
SECTIONS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
STANDARD_CLAIM_RESOURCES = ("storage", "requests.storage")


def limit_range(obj: dict) -> list:
    found, seen_types = [], set()
    for _, item, where in dict_items(as_dict(obj.get("spec")).get("limits"), "spec.limits"):
        found += _item(item, where, seen_types)
    return found


def _item(item: dict, where: str, seen_types: set) -> list:
    kind = item.get("type")
    found = _type_name(kind, f"{where}.type")
    if isinstance(kind, str) and kind in seen_types:
        found.append(causes.duplicate(f"{where}.type", kind))
    seen_types.add(kind)
    sections = [s for s in SECTIONS if not (kind == POD and s in ("default", "defaultRequest"))]
    if kind == POD:
        found += [causes.forbidden(f"{where}.{s}", "may not be specified when `type` is 'Pod'")
                  for s in ("default", "defaultRequest") if as_dict(item.get(s))]
    parsed: dict[str, dict] = {}
    for section in sections:
        parsed[section], errors = _quantities(kind, as_dict(item.get(section)), f"{where}.{section}")
        found += errors
    if kind == CLAIM and "storage" not in as_dict(item.get("min")) and "storage" not in as_dict(item.get("max")):
        found.append(causes.required(f"{where}.limits", "either minimum or maximum storage value is required, "
                                                        "but neither was provided"))
    keys = sorted(set().union(*(parsed[s] for s in sections)))
    for key in keys:
        found += _bounds(key, {s: parsed[s].get(key) for s in sections}, where)
    return found


def _type_name(kind, path: str) -> list:
    """validateLimitRangeTypeName: a qualified name, one of the standard types unless it has a prefix."""
    if not isinstance(kind, str):
        return []
    problems = names.qualified_name(kind)
    if problems:
        return [causes.invalid(path, kind, problem) for problem in problems]
    if "/" not in kind and kind not in STANDARD_TYPES:
        return [causes.invalid(path, kind, "must be a standard limit type or fully qualified")]
    return []


def _quantities(kind, section: dict, path: str) -> tuple[dict, list]:
    """{resource: (text, value)} of one section, and the causes of names and quantities refused."""
    parsed, found = {}, []
    for name, text in section.items():
        where = f"{path}[{name}]"
        if kind in (POD, CONTAINER) and not _resource_name_ok(name):
            found.append(causes.invalid(where, name, "must be a standard resource for containers"))
        elif kind not in (POD, CONTAINER) and not (_resource_name_ok(name) or name in STANDARD_CLAIM_RESOURCES):
            found.append(causes.invalid(where, name, "must be a standard resource type or fully qualified"))
        try:
            parsed[name] = (str(text), parse_quantity(text))
        except QuantityError as error:
            found.append(causes.invalid(where, text, str(error)))
    return parsed, found


def _bounds(key: str, q: dict, where: str) -> list:
    """min <= defaultRequest <= default <= max, and 1 <= maxLimitRequestRatio <= max/min, for ``key``."""
    hi, lo, limit, request, ratio = (q.get(s) for s in SECTIONS)
    checks = [   # (the two compared, refused when the first is greater; the field; the value shown; words)
        (lo, hi, "min", lo, "min value {} is greater than max value {}"),
        (lo, request, "defaultRequest", request, "min value {} is greater than default request value {}"),
        (request, hi, "defaultRequest", request, "default request value {} is greater than max value {}"),
        (request, limit, "defaultRequest", request, "default request value {} is greater than default limit value {}"),
        (lo, limit, "default", lo, "min value {} is greater than default value {}"),
        (limit, hi, "default", hi, "default value {} is greater than max value {}"),
    ]
    found = [causes.invalid(f"{where}.{section}[{key}]", shown[0], words.format(a[0], b[0]))
             for a, b, section, shown, words in checks if a and b and a[1] > b[1]]
    if ratio and ratio[1] < 1:
        found.append(causes.invalid(f"{where}.maxLimitRequestRatio[{key}]", ratio[0], f"ratio {ratio[0]} is less than 1"))
    if ratio and lo and hi and lo[1] > 0 and ratio[1] > hi[1] / lo[1]:
        found.append(causes.invalid(f"{where}.maxLimitRequestRatio[{key}]", ratio[0],
                                    f"ratio {ratio[0]} is greater than max/min = {_milli(hi) / _milli(lo):f}"))
    return found


def _milli(parsed: tuple) -> int:
    return math.ceil(parsed[1] * 1000)


def default_limit_range(obj: dict) -> None:
    """SetDefaults_LimitRangeItem, for Container items: max → default (the limit),
    default → defaultRequest, then min → defaultRequest, where not set."""
    for item in as_dict(obj.get("spec")).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != CONTAINER:
            continue
        default = item.setdefault("default", {})
        request = item.setdefault("defaultRequest", {})
        if not isinstance(default, dict) or not isinstance(request, dict):
            continue
        for source, target in ((item.get("max"), default), (default, request), (item.get("min"), request)):
            for name, quantity in as_dict(source).items():
                target.setdefault(name, quantity)
        for section in ("default", "defaultRequest"):     # omitempty: an empty one is not stored
            if not item[section]:
                del item[section]
