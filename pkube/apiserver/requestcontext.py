"""Per-request notes that deep code adds and the edge of the request reads back:
warnings for the client (``Warning: 299`` headers, which kubectl prints) and annotations
for the request's audit event (as Kubernetes' ``warning.AddWarning(ctx, ...)`` and
``audit.AddAuditAnnotation(ctx, ...)``).

``begin()`` is called by the apiserver's request guard before serving; code running
inside that request (admission plugins, the authorizer) then calls ``add_warning`` and
``add_annotation`` without having the request at hand. Outside a request both do
nothing. The context variable is set per task, so concurrent requests never mix.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field

HEADER_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")   # what uvicorn refuses in a header value


@dataclass
class RequestNotes:
    """What was noted during one request (warnings de-duplicated, in order)."""

    warnings: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[RequestNotes | None] = contextvars.ContextVar("pkube_request_notes",
                                                                                   default=None)


def begin() -> RequestNotes:
    """Start the notes of the request being served by the current task."""
    notes = RequestNotes()
    _CURRENT.set(notes)
    return notes


def add_warning(text: str) -> None:
    """Warn the client of the current request (once per distinct text)."""
    notes = _CURRENT.get()
    if notes is not None and text not in notes.warnings:
        notes.warnings.append(text)


def add_annotation(key: str, value: str) -> None:
    """Annotate the current request's audit event; the first value for a key wins, as
    in Kubernetes."""
    notes = _CURRENT.get()
    if notes is not None:
        notes.annotations.setdefault(key, value)


def warning_header(warnings: list[str]) -> str:
    """The ``Warning`` header value of ``warnings`` (RFC 7234 code 299, \\ and " escaped, as
    Kubernetes). A warning quotes what the client sent (an unknown field's name): its text goes
    out as UTF-8 bytes, as kube-apiserver's (an ASGI header is the latin-1 str of its bytes),
    and control characters, which a header cannot carry, as spaces."""
    text = ", ".join('299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in warnings)
    return HEADER_CONTROL.sub(" ", text).encode("utf-8", "replace").decode("latin-1")
