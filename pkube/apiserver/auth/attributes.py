"""The attributes an authorizer decides on (Kubernetes' ``authorizer.Attributes``): who asks,
the verb, and either the resource (group, resource, subresource, namespace, name) or the
non-resource path.

They hold apiserver.requestinfo's RequestInfo, with two of kube-apiserver's rules applied: a
list or watch selecting one object by ``fieldSelector=metadata.name=X`` is about that name
(the kubelet's single-Secret watches), and the streaming subresources are authorized as
described in ``connect_verbs``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs

from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.requestinfo import RequestInfo, request_info

STREAM_SUBRESOURCES = frozenset(("exec", "attach", "portforward"))
_NAME_SELECTOR = "metadata.name="


@dataclass(frozen=True)
class Attributes:
    """One authorization question: who asks (``user``) and what (``request``). For a
    non-resource request (``request.resource_request`` False) only its ``verb`` and
    ``path`` mean anything."""

    user: UserInfo
    request: RequestInfo

    def with_verb(self, verb: str) -> "Attributes":
        """The same question for another verb."""
        return Attributes(self.user, dataclasses.replace(self.request, verb=verb))


def resource_attributes(user: UserInfo, verb: str, group: str, version: str, namespace: str,
                        resource: str, subresource: str = "", name: str = "") -> Attributes:
    """A question about a resource that no HTTP request carries (reviews, tests)."""
    return Attributes(user, RequestInfo(True, verb, "", group, version, namespace, resource, subresource, name))


def non_resource_attributes(user: UserInfo, verb: str, path: str) -> Attributes:
    """A question about a non-resource URL (/healthz, /version, discovery)."""
    return Attributes(user, RequestInfo(False, verb, path))


def from_request_info(user: UserInfo, info: RequestInfo, query: Mapping[str, str] = {}) -> Attributes:
    """The attributes of a request already read by ``request_info``; ``query`` is needed only
    for a list or watch (its fieldSelector)."""
    if not info.name and info.verb in ("list", "watch"):
        name = _selected_name(query.get("fieldSelector", ""))
        if name:
            info = dataclasses.replace(info, name=name)
    return Attributes(user, info)


def request_attributes(user: UserInfo, method: str, path: str, query_string: str) -> Attributes:
    """The attributes of one HTTP request (``query_string`` undecoded)."""
    query = {k: v[-1] for k, v in parse_qs(query_string).items()} if query_string else {}
    return from_request_info(user, request_info(method, path, query), query)


def connect_verbs(attrs: Attributes) -> tuple[str, ...]:
    """The verbs a pods/exec, attach or portforward WebSocket (a GET) needs: ``get`` as its
    method says and ``create``, as Kubernetes 1.35+ checks too (AuthorizePodWebsocketUpgradeCreatePermission),
    so a read-only role cannot exec."""
    info = attrs.request
    if info.resource == "pods" and info.subresource in STREAM_SUBRESOURCES and info.verb == "get":
        return ("get", "create")
    return (info.verb,)


def _selected_name(selector: str) -> str:
    """X of a field selector that is exactly ``metadata.name=X`` (or ``==``); else ""."""
    if "," in selector or not selector.startswith(_NAME_SELECTOR):
        return ""
    value = selector[len(_NAME_SELECTOR):]
    return value[1:] if value.startswith("=") else value
