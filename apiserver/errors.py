"""The ONE place that makes Kubernetes ``Status`` objects.

Handlers raise ``ApiError`` (built by the constructors below); the app turns
it into an HTTP response with ``ApiError.status()`` as the body. Messages and
reasons follow Kubernetes' ``k8s.io/apimachinery/pkg/api/errors`` so clients
(kubectl, the kubernetes client, lightkube) show what users expect.
"""

from __future__ import annotations

from typing import Optional

from api.kinds import ResourceInfo


class ApiError(Exception):
    """A failed request, carrying the Status to answer with."""

    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        """The Status object (a JSON-able dict)."""
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


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


def resource_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


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


def method_not_allowed(verb: str, what: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({verb} {what})")


def method_not_allowed_while(verb: str, why: str) -> ApiError:
    """405 for a verb refused in the resource's current state ("create not allowed while ...")."""
    return ApiError(405, "MethodNotAllowed", f"{verb} not allowed while {why}")


def unsupported_media_type(content_type: str, accepted: tuple[str, ...] = ("application/json", "application/yaml")) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f'{", ".join(accepted)} (got "{content_type}")')


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge",
                    f"Request entity too large: limit is {limit} bytes")


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def internal_error(message: str = "an internal error occurred") -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def storage_error(message: str) -> ApiError:
    """An etcd error passed on as kube-apiserver does with one it has no Status for (500, no
    reason, etcd's message): 'etcdserver: mvcc: database space exceeded'."""
    return ApiError(500, "", message)
