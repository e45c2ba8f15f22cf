"""``pkubectl wait``: block until objects meet a condition, are deleted, or a JSONPath has a
value, following a watch of each object (a list by name, then a watch from its revision:
no polling loop).

Also used by ``drain`` to wait for evicted pods to be gone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from pkube.kubectl.errors import CliError

GONE_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class WaitFor:
    """What ``--for`` asks: kind is "delete", "create", "condition" or "jsonpath"."""

    kind: str
    name: str = ""       # the condition's type, or the JSONPath expression
    value: Optional[str] = None   # the wanted status / value (None: jsonpath only needs to exist)


def parse_for(text: str) -> WaitFor:
    """``--for`` as kubectl reads it: ``delete``, ``create``, ``condition=C[=V]`` (V defaults to
    "true", compared without case), ``jsonpath={.path}[=V]``."""
    lowered = text.lower()
    if lowered in ("delete", "create"):
        return WaitFor(lowered)
    if lowered.startswith("condition="):
        condition = text[len("condition="):]
        name, sep, value = condition.partition("=")
        if not name:
            raise CliError(f"unrecognized condition: \"{text}\"")
        return WaitFor("condition", name, value if sep else "true")
    if lowered.startswith("jsonpath="):
        expression = text[len("jsonpath="):]
        path, value = _split_jsonpath(expression)
        if not path:
            raise CliError("jsonpath expression cannot be empty")
        return WaitFor("jsonpath", path, value)
    raise CliError(f"unrecognized condition: \"{text}\"")


def _split_jsonpath(expression: str) -> tuple[str, Optional[str]]:
    """``{.status.phase}=Running`` -> ("{.status.phase}", "Running"); the ``=`` that ends the
    expression is the first one after its closing brace."""
    end = expression.rfind("}")
    head, rest = expression[:end + 1], expression[end + 1:]
    if end < 0:
        head, sep, value = expression.partition("=")
        return head, value if sep else None
    if rest.startswith("="):
        return head, rest[1:]
    return head, None


def condition_met(obj: dict, wanted: WaitFor) -> bool:
    """kubectl's ConditionalWait: a status condition of that type (any case) with that status,
    and observed at the object's generation when it says which it observed."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    for condition in status.get("conditions") or []:
        if str(condition.get("type", "")).lower() != wanted.name.lower():
            continue
        observed = condition.get("observedGeneration", status.get("observedGeneration"))
        if generation is not None and observed is not None and observed < generation:
            return False
        return str(condition.get("status", "")).lower() == (wanted.value or "").lower()
    return False


def jsonpath_met(obj: dict, wanted: WaitFor) -> bool:
    """The JSONPath finds something (and, when a value is wanted, every result prints as it)."""
    from pkube.api.jsonpath import JSONPathError, format_value, values_at

    try:
        results = values_at(wanted.name, obj)
    except JSONPathError as err:
        raise CliError(f"error parsing jsonpath {wanted.name}, {err}") from None
    if not results:
        return False
    if wanted.value is None:
        return True
    return all(format_value(r) == wanted.value for r in results)


def object_states(session, resource, namespace: Optional[str], name: str, deadline: float,
                  clock: Callable[[], float] = time.monotonic) -> Iterator[Optional[dict]]:
    """The object's state now, then after each change (None while it does not exist), until
    ``deadline``: one list by ``metadata.name``, then a watch from that list's revision; a
    410 or a closed stream lists again. The caller stops iterating when satisfied."""
    from pkube.client.errors import ApiError, Gone

    selector = f"metadata.name={name}"
    while clock() < deadline:
        listed = session.client.list(resource, namespace, field_selector=selector)
        items = listed.get("items") or []
        yield items[0] if items else None
        revision = (listed.get("metadata") or {}).get("resourceVersion")
        remaining = max(1, math.ceil(deadline - clock()))
        try:
            for kind, obj in session.client.watch(resource, namespace, revision, field_selector=selector,
                                                  timeout_seconds=remaining):
                if kind == "BOOKMARK":
                    continue
                yield None if kind == "DELETED" else obj
                if clock() >= deadline:
                    return
        except Gone:
            continue
        except ApiError:
            time.sleep(GONE_RETRY_SECONDS)   # a closed stream: list again, briefly later


def wait_one(session, target, wanted: WaitFor, deadline: float, uid: Optional[str] = None) -> Optional[dict]:
    """Block until ``target`` meets ``wanted``; the object as last seen (None for a delete).
    Raises CliError ``timed out waiting for the condition on pods/x`` at ``deadline``.
    For a delete, an object with another ``uid`` than the one waited on counts as gone."""
    for obj in object_states(session, target.resource, target.namespace, target.name, deadline):
        if _satisfied(obj, wanted, uid):
            return None if wanted.kind == "delete" else obj
    raise CliError(f"timed out waiting for the condition on {target.resource.plural}/{target.name}")


def _satisfied(obj: Optional[dict], wanted: WaitFor, uid: Optional[str]) -> bool:
    if wanted.kind == "delete":
        return obj is None or (uid is not None and (obj.get("metadata") or {}).get("uid") != uid)
    if obj is None:
        return False
    if wanted.kind == "create":
        return True
    if wanted.kind == "condition":
        return condition_met(obj, wanted)
    return jsonpath_met(obj, wanted)


def wait_targets(session, targets, wanted: WaitFor, timeout: float, out, listed: bool = False) -> list[str]:
    """Wait for every target in turn under one deadline (kubectl's single context), printing
    ``pod/x condition met`` for each; returns the error lines of those that failed. ``listed``:
    the targets come from a list (``-l``, ``--all``), so one gone by now was deleted (met,
    and said); a named target that never existed is met silently."""
    from pkube.client.errors import ApiError, NotFound

    deadline = time.monotonic() + timeout
    failures = []
    for target in targets:
        try:
            before = None if wanted.kind == "create" else session.get_json(target.path)
        except NotFound as err:
            if wanted.kind == "delete":
                if listed:
                    out.write(f"{target.label} condition met\n")
                continue
            failures.append(f"Error from server ({err.reason}): {err.message}")
            continue
        uid = ((before or {}).get("metadata") or {}).get("uid")
        try:
            wait_one(session, target, wanted, deadline, uid)
        except CliError as err:
            failures.append(str(err))
            continue
        except ApiError as err:
            failures.append(f"Error from server ({err.reason or 'Unknown'}): {err.message}")
            continue
        out.write(f"{target.label} condition met\n")
        out.flush()
    return failures


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``30s``, ``1m30s``, ``500ms``, ``0``) in seconds; a bare number is
    seconds. Raises CliError like kubectl for anything else."""
    import re

    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        raise CliError(f"invalid argument \"{text}\": time: invalid duration \"{text}\"")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
