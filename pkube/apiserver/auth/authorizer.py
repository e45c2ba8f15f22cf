"""Authorization: may this user do this (Kubernetes' ``authorizer.Authorizer``).

Each authorizer answers ALLOW, DENY or NO_OPINION with a reason; ``Union`` asks them in
order and the first ALLOW or DENY wins, as kube-apiserver's ``--authorization-mode``
chain does. ``system:masters`` is allowed everything before any of them is asked. A
request nobody allows is refused with ``forbidden`` - Kubernetes' 403 Status and message.

Authorizers decide synchronously from in-memory state (filled from watches by their
``start``), so authorization costs no I/O per request.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

from pkube.apiserver import errors
from pkube.apiserver.auth.attributes import Attributes
from pkube.apiserver.auth.user import MASTERS_GROUP

ALLOW, DENY, NO_OPINION = "Allow", "Deny", "NoOpinion"


class Authorizer(Protocol):
    """One authorization mode. ``start``/``stop`` (optional coroutines) fill and release
    its caches."""

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        """(ALLOW, DENY or NO_OPINION, a reason - "" when there is nothing to say)."""


class Union:
    """The chain of one apiserver; ``authorize`` raises the 403 ApiError."""

    def __init__(self, authorizers: Sequence[Authorizer]):
        self.authorizers = list(authorizers)

    async def start(self) -> None:
        for authorizer in self.authorizers:
            if hasattr(authorizer, "start"):
                await authorizer.start()

    async def stop(self) -> None:
        for authorizer in reversed(self.authorizers):
            if hasattr(authorizer, "stop"):
                await authorizer.stop()

    def mode(self, kind: type) -> Optional[object]:
        """The first authorizer of class ``kind`` in the chain, or None."""
        return next((a for a in self.authorizers if isinstance(a, kind)), None)

    def decide(self, attrs: Attributes) -> tuple[str, str]:
        """(ALLOW or DENY/NO_OPINION, the reasons given, joined by ", ")."""
        if MASTERS_GROUP in attrs.user.groups:
            return ALLOW, ""
        reasons = []
        for authorizer in self.authorizers:
            decision, reason = authorizer.authorize(attrs)
            if reason:
                reasons.append(reason)
            if decision != NO_OPINION:
                return decision, ", ".join(reasons)
        return NO_OPINION, ", ".join(reasons)

    def allowed(self, attrs: Attributes) -> bool:
        return self.decide(attrs)[0] == ALLOW

    def authorize(self, attrs: Attributes) -> None:
        """Return when ``attrs`` is allowed; raise the 403 ApiError otherwise."""
        decision, reason = self.decide(attrs)
        if decision != ALLOW:
            raise forbidden(attrs, reason)


def forbidden_message(attrs: Attributes) -> str:
    """``User "alice" cannot list resource "pods" in API group "" in the namespace "default"``
    (kube-apiserver's forbiddenMessage)."""
    user, info = attrs.user.name, attrs.request
    if not info.resource_request:
        return f'User "{user}" cannot {info.verb} path "{info.path}"'
    resource = info.resource_and_subresource
    where = (f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope")
    return f'User "{user}" cannot {info.verb} resource "{resource}" in API group "{info.api_group}" {where}'


def sanitized(message: str) -> str:
    """&, < and > as HTML entities, as responsewriters.ForbiddenStatusError writes the message."""
    return message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def forbidden(attrs: Attributes, reason: Optional[str] = "") -> errors.ApiError:
    """The 403 Status kube-apiserver answers for a request its authorizers did not allow."""
    message = sanitized(forbidden_message(attrs)) + (f": {reason}" if reason else "")
    info = attrs.request
    if not info.resource_request or not info.resource:
        return errors.ApiError(403, "Forbidden", f"forbidden: {message}", details={})
    qualified = f"{info.resource}.{info.api_group}" if info.api_group else info.resource
    subject = f'{qualified} "{info.name}"' if info.name else qualified
    details = {"group": info.api_group, "kind": info.resource}
    if info.name:
        details["name"] = info.name
    return errors.ApiError(403, "Forbidden", f"{subject} is forbidden: {message}", details=details)


def build(storage, modes: Sequence[str]) -> Union:
    """The chain ``--authorization-mode`` names (``Node``, ``RBAC``, in the order given);
    ValueError for an unknown mode."""
    from pkube.apiserver.auth.node import NodeAuthorizer
    from pkube.apiserver.auth.rbac import RBACAuthorizer
    known = {"Node": NodeAuthorizer, "RBAC": RBACAuthorizer}
    unknown = [m for m in modes if m not in known]
    if unknown:
        raise ValueError(f"unknown authorization mode {unknown[0]!r} (supported: Node, RBAC)")
    return Union([known[m](storage) for m in modes])
