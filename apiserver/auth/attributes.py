"""The attributes an authorizer decides on (Kubernetes' ``authorizer.Attributes``): who asks,
the verb, and either the resource (group, resource, subresource, namespace, name) or the
non-resource path.

They come from apiserver.requestinfo's RequestInfo plus two of kube-apiserver's rules: a
list or watch selecting one object by ``fieldSelector=metadata.name=X`` is about that name
(the kubelet's single-Secret watches), and the streaming subresources are authorized as
described in ``connect_verbs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs

from apiserver.auth.user import UserInfo
from apiserver.requestinfo import RequestInfo, request_info

STREAM_SUBRESOURCES = frozenset(("exec", "attach", "portforward"))
_NAME_SELECTOR = "metadata.name="


@dataclass(frozen=True)
class Attributes:
    """One authorization question. For a non-resource request (``resource_request``
    False) only ``user``, ``verb`` and ``path`` mean anything."""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def resource_and_subresource(self) -> str:
        """``pods`` or ``pods/status``, as rules and messages spell it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def from_request_info(user: UserInfo, info: RequestInfo, query: Mapping[str, str] = {}) -> Attributes:
    """The attributes of a request already read by ``request_info``; ``query`` is needed only
    for a list or watch (its fieldSelector)."""
    name = info.name
    if not name and info.verb in ("list", "watch"):
        name = _selected_name(query.get("fieldSelector", ""))
    return Attributes(user, info.verb, info.resource_request, info.path, info.api_group, info.api_version,
                      info.namespace, info.resource, info.subresource, name)


def request_attributes(user: UserInfo, method: str, path: str, query_string: str) -> Attributes:
    """The attributes of one HTTP request (``query_string`` undecoded)."""
    query = {k: v[-1] for k, v in parse_qs(query_string).items()} if query_string else {}
    return from_request_info(user, request_info(method, path, query), query)


def connect_verbs(attrs: Attributes) -> tuple[str, ...]:
    """The verbs a pods/exec, attach or portforward WebSocket (a GET) needs: ``get`` as its
    method says and ``create``, as Kubernetes 1.35+ checks too (AuthorizePodWebsocketUpgradeCreatePermission),
    so a read-only role cannot exec."""
    if attrs.resource == "pods" and attrs.subresource in STREAM_SUBRESOURCES and attrs.verb == "get":
        return ("get", "create")
    return (attrs.verb,)


def _selected_name(selector: str) -> str:
    """X of a field selector that is exactly ``metadata.name=X`` (or ``==``); else ""."""
    if "," in selector or not selector.startswith(_NAME_SELECTOR):
        return ""
    value = selector[len(_NAME_SELECTOR):]
    return value[1:] if value.startswith("=") else value
