"""API errors, translated once from an HTTP response into a typed exception.

Every non-2xx answer of the apiserver becomes an ``ApiError`` carrying the
Kubernetes ``Status`` dict. Subclasses let callers catch what they can act on:
``NotFound`` (404), ``AlreadyExists`` (409, reason AlreadyExists), ``Conflict``
(409 otherwise: a stale resourceVersion, retry after a re-read), ``Gone`` (410:
relist), ``Invalid`` (422: the object is wrong, never retry as is).
"""

from __future__ import annotations

from typing import Optional

from pkube.api.jsonvalue import loads


class ApiError(Exception):
    """An error answer of the apiserver; ``status`` is the Status object."""

    def __init__(self, status: dict):
        self.status = status
        super().__init__(f"{self.code} {self.reason}: {status.get('message', '')}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return self.status.get("reason") or ""

    @property
    def message(self) -> str:
        return self.status.get("message") or ""


class NotFound(ApiError):
    """404: the object (or the namespace, or the path) does not exist."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: create() of a name already taken."""


class Conflict(ApiError):
    """409 Conflict: a precondition or resourceVersion did not hold; re-read and retry."""


class Gone(ApiError):
    """410: the requested resourceVersion is compacted; list again."""


class Invalid(ApiError):
    """422: the object failed validation; ``status.details.causes`` says where."""


def status_for(code: int, reason: str, message: str) -> dict:
    """A Status dict, for errors that never reached (or were not made by) an apiserver."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "reason": reason, "message": message}


def error_for_status(status: dict) -> ApiError:
    """The ApiError subclass matching a Status object's code and reason."""
    code = int(status.get("code") or 0)
    reason = status.get("reason") or ""
    if code == 404:
        return NotFound(status)
    if code == 409:
        return AlreadyExists(status) if reason == "AlreadyExists" else Conflict(status)
    if code == 410 or reason in ("Gone", "Expired"):
        return Gone(status)
    if code == 422:
        return Invalid(status)
    return ApiError(status)


def error_from_response(code: int, body: bytes) -> ApiError:
    """Translate one HTTP error answer; a body that is not a Status is kept as the message."""
    status = _parse_status(body)
    if status is None:
        text = body.decode("utf-8", "replace").strip()
        status = status_for(code, _default_reason(code), text or f"HTTP {code}")
    status.setdefault("code", code)
    return error_for_status(status)


def _parse_status(body: bytes) -> Optional[dict]:
    try:
        data = loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return data
    return None


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 413: "RequestEntityTooLarge",
            415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def _default_reason(code: int) -> str:
    return _REASONS.get(code, "Unknown")


class Unavailable(ApiError):
    """The apiserver could not be reached (connect, TLS or read failure); retry later."""


def unavailable(url: str, err: Exception) -> Unavailable:
    """The Unavailable error for a transport failure talking to ``url``."""
    return Unavailable(status_for(503, "ServiceUnavailable", f"{url}: {str(err) or type(err).__name__}"))
