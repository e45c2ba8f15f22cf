"""What a request asks for, read from its method, path and query alone (Kubernetes'
``RequestInfoFactory``): the verb, the resource, namespace, name and subresource.

No registry lookup: the audit log and the in-flight limit need this for every request,
including those that end in 404, and it must cost next to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

READ_VERBS = frozenset(("get", "list", "watch"))
LONG_RUNNING_VERBS = frozenset(("watch", "proxy"))
LONG_RUNNING_SUBRESOURCES = frozenset(("attach", "exec", "proxy", "log", "portforward"))
NAMESPACE_SUBRESOURCES = frozenset(("status", "finalize"))
_ITEM_VERBS = {"GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
_COLLECTION_VERBS = {"GET": "list", "HEAD": "list", "POST": "create", "DELETE": "deletecollection"}


@dataclass(frozen=True)
class RequestInfo:
    """One request. ``resource_request`` is False for /healthz, /version, discovery and
    other non-resource URLs, whose ``verb`` is the lower-case method."""

    resource_request: bool
    verb: str
    path: str
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def resource_and_subresource(self) -> str:
        """``pods`` or ``pods/status``, as RBAC rules and messages spell it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def read_only(self) -> bool:
        return self.verb in READ_VERBS

    @property
    def long_running(self) -> bool:
        """Watches, proxies and the streaming subresources (kube-apiserver's
        BasicLongRunningRequestCheck): they live as long as the client wants."""
        return self.verb in LONG_RUNNING_VERBS or (
            self.resource_request and self.subresource in LONG_RUNNING_SUBRESOURCES)


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """The RequestInfo of one HTTP request (``query``: its parsed query parameters)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(False, method.lower(), path)
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]    # also for the Namespace itself, as Kubernetes does
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    verb = (_ITEM_VERBS if name else _COLLECTION_VERBS).get(method.upper(), method.lower())
    if watch_path or (verb in ("list", "get") and query.get("watch") in ("1", "true")):
        verb = "watch"
    return RequestInfo(True, verb, path, group, version, namespace, resource, subresource, name)
