"""The ONE place that makes Kubernetes ``Status`` objects.

Handlers raise ``ApiError`` (built by the constructors below); the app turns
it into an HTTP response with ``ApiError.status()`` as the body. Messages and
reasons follow Kubernetes' ``k8s.io/apimachinery/pkg/api/errors`` so clients
(kubectl, the kubernetes client, lightkube) show what users expect.
"""

from __future__ import annotations

from typing import Optional

from pkube.api.kinds import ResourceInfo


DETAIL_FIELDS = ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")
CAUSE_FIELDS = ("reason", "message", "field")


class ApiError(Exception):
    """A failed request, carrying the Status to answer with. ``details`` None leaves
    ``details`` out of the Status; a dict (even empty) is written, as Kubernetes writes
    a non-nil ``*StatusDetails``."""

    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        """The Status object (a JSON-able dict), its fields in metav1.Status' order with
        Go's ``omitempty``: kind, apiVersion, metadata, status, message, reason, details, code."""
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        if self.message:
            body["message"] = self.message
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = status_details(self.details)
        body["code"] = self.code
        return body


class PlainTextError(ApiError):
    """An error kube-apiserver answers with ``http.Error`` (its message, a newline, text/plain)
    rather than a Status: the 429 of the max-in-flight and priority-and-fairness filters.
    ``headers`` go with it."""

    def __init__(self, code: int, reason: str, message: str, headers: Optional[dict] = None):
        super().__init__(code, reason, message)
        self.headers = headers or {}


def status_details(details: dict) -> dict:
    """``details`` as metav1.StatusDetails encodes: name, group, kind, uid, causes,
    retryAfterSeconds, empty ones left out; each cause as reason, message, field."""
    out = {k: details[k] for k in DETAIL_FIELDS if details.get(k)}
    if "causes" in out:
        out["causes"] = [{k: c[k] for k in CAUSE_FIELDS if c.get(k)} for c in out["causes"]]
    return out


def qualified(info: ResourceInfo) -> str:
    """'pods' or 'deployments.apps', as Kubernetes names a resource in messages."""
    return f"{info.plural}.{info.group}" if info.group else info.plural


def _details(info: ResourceInfo, name: str) -> dict:
    return {"name": name, "group": info.group, "kind": info.plural}


def not_found(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(info)} "{name}" not found', _details(info, name))


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found',
                    {"name": name, "kind": "namespaces"})


def resource_not_found(path: str = "") -> ApiError:
    """404 for a path no resource is served at: what kube-apiserver's go-restful error handler
    writes (NewGenericServerResponse(404, ...) with empty details). ``path`` is not shown."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def page_not_found() -> PlainTextError:
    """404 for a path outside every served group and version (an unknown group, version or
    root path): kube-apiserver's NotFound handler answers with Go's http.NotFound, plain text,
    not a Status. Paths inside a served group-version get resource_not_found's Status."""
    return PlainTextError(404, "NotFound", "404 page not found")


def already_exists(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(info)} "{name}" already exists',
                    _details(info, name))


def conflict(info: ResourceInfo, name: str, why: str = "") -> ApiError:
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(info)} "{name}": {why}',
                    _details(info, name))


def invalid(info: ResourceInfo, name: str, causes: list[dict]) -> ApiError:
    """422 Invalid; ``causes`` are {reason, message, field} dicts."""
    errors = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    text = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    kind = f"{info.kind}.{info.group}" if info.group else info.kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}',
                    {"name": name, "group": info.group, "kind": info.kind, "causes": causes})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str) -> ApiError:
    """410 for a compacted resourceVersion or continue token (Kubernetes reason Expired)."""
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def method_not_allowed(verb: str = "", what: str = "") -> ApiError:
    """405 for a verb the resource has no route for (go-restful's, as kube-apiserver writes it:
    NewGenericServerResponse(405, ...) with empty details). ``verb`` and ``what`` are not shown."""
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def method_not_allowed_while(verb: str, why: str) -> ApiError:
    """405 for a verb refused in the resource's current state ("create not allowed while ...")."""
    return ApiError(405, "MethodNotAllowed", f"{verb} not allowed while {why}")


BODY_MEDIA_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


def unsupported_media_type(content_type: str = "", accepted: tuple[str, ...] = BODY_MEDIA_TYPES) -> ApiError:
    """415 for a body in an unknown format (negotiation.NewUnsupportedMediaTypeError: no
    details). ``content_type`` is not shown, as Kubernetes does not show it."""
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types include: {", ".join(accepted)}')


def unsupported_patch_type() -> ApiError:
    """415 for a PATCH whose Content-Type is no patch type: go-restful refuses it before the
    handler (its route Consumes the patch types), and kube-apiserver writes its message."""
    return ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})


def not_acceptable() -> ApiError:
    """406 for an Accept header naming nothing a resource route Produces: go-restful refuses it
    ("406: Not Acceptable") and kube-apiserver's serviceErrorHandler writes
    NewGenericServerResponse(406, ...), which keeps that message, with empty details."""
    return ApiError(406, "NotAcceptable", "406: Not Acceptable", {})


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge",
                    f"Request entity too large: limit is {limit} bytes")


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def internal_error(message: str = "an internal error occurred") -> ApiError:
    """errors.go NewInternalError: the error also as the one cause of the details."""
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def storage_error(message: str) -> ApiError:
    """An etcd error passed on as kube-apiserver does with one it has no Status for (500, no
    reason, etcd's message): 'etcdserver: mvcc: database space exceeded'."""
    return ApiError(500, "", message)
