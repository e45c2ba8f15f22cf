"""RBAC (rbac.authorization.k8s.io/v1) evaluated as Kubernetes' ``rbac.RBACAuthorizer`` does.

A user may do what any rule allows of the ClusterRoles its ClusterRoleBindings grant,
then - for a namespaced request - of the Roles and ClusterRoles its RoleBindings in that
namespace grant. Rules match Kubernetes' way (``rbac/v1/evaluation_helpers.go``): ``*``
in verbs, apiGroups and resources; ``resource/subresource`` and ``*/subresource``;
resourceNames only when the request has a name; nonResourceURLs exact or ``prefix*``.
RBAC never denies: no match is NO_OPINION.

``Policy`` is the pure index (unit-tested without a store); ``RBACAuthorizer`` keeps one
from watches of the four kinds and caches the compiled rules of each (user, namespace)
until any of them changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pkube.apiserver.auth import policy as bootstrap_policy
from pkube.apiserver.auth.attributes import Attributes
from pkube.apiserver.requestinfo import RequestInfo
from pkube.apiserver.auth.authorizer import ALLOW, NO_OPINION
from pkube.apiserver.auth.mirror import Mirror
from pkube.apiserver.auth.user import SERVICE_ACCOUNT_PREFIX, UserInfo

GROUP = "rbac.authorization.k8s.io"
PREFIXES = {"Role": "/registry/roles/", "RoleBinding": "/registry/rolebindings/",
            "ClusterRole": "/registry/clusterroles/", "ClusterRoleBinding": "/registry/clusterrolebindings/"}
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Rule:
    """One compiled PolicyRule."""

    verbs: frozenset
    api_groups: frozenset
    resources: tuple
    resource_names: frozenset
    non_resource_urls: tuple

    @classmethod
    def of(cls, doc: dict) -> "Rule":
        return cls(frozenset(doc.get("verbs") or ()), frozenset(doc.get("apiGroups") or ()),
                   tuple(doc.get("resources") or ()), frozenset(doc.get("resourceNames") or ()),
                   tuple(doc.get("nonResourceURLs") or ()))

    def allows(self, attrs: Attributes) -> bool:
        """True when this rule covers ``attrs``."""
        info = attrs.request
        if info.verb not in self.verbs and "*" not in self.verbs:
            return False
        if not info.resource_request:
            return self._url_matches(info.path)
        return ((info.api_group in self.api_groups or "*" in self.api_groups)
                and self._resource_matches(info)
                and (not self.resource_names or info.name in self.resource_names))

    def _resource_matches(self, info: RequestInfo) -> bool:
        combined = info.resource_and_subresource
        for resource in self.resources:
            if resource == "*" or resource == combined:
                return True
            if info.subresource and resource == "*/" + info.subresource:
                return True
        return False

    def _url_matches(self, path: str) -> bool:
        for url in self.non_resource_urls:
            if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
                return True
        return False


def subject_matches(subject: dict, user: UserInfo, binding_namespace: str) -> bool:
    """Whether one subject of a binding (in ``binding_namespace``, "" for a ClusterRoleBinding)
    is ``user`` (Kubernetes' appliesToUser)."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    return False


def binds(binding: dict, user: UserInfo) -> bool:
    namespace = (binding.get("metadata") or {}).get("namespace", "")
    return any(subject_matches(s, user, namespace) for s in binding.get("subjects") or ())


class Policy:
    """The RBAC objects by name: ``roles`` and ``role_bindings`` by namespace then name,
    ``cluster_roles`` and ``cluster_role_bindings`` by name (the objects as stored)."""

    def __init__(self):
        self.roles: dict[str, dict[str, dict]] = {}
        self.role_bindings: dict[str, dict[str, dict]] = {}
        self.cluster_roles: dict[str, dict] = {}
        self.cluster_role_bindings: dict[str, dict] = {}
        self._compiled: dict[int, tuple[Rule, ...]] = {}

    def put(self, kind: str, obj: dict, deleted: bool = False) -> None:
        """Record an added, changed or (``deleted``) removed object of ``kind``."""
        meta = obj.get("metadata") or {}
        table = self._table(kind, meta.get("namespace", ""))
        if deleted:
            table.pop(meta.get("name", ""), None)
        else:
            table[meta.get("name", "")] = obj
        self._compiled.clear()

    def _table(self, kind: str, namespace: str) -> dict:
        if kind == "Role":
            return self.roles.setdefault(namespace, {})
        if kind == "RoleBinding":
            return self.role_bindings.setdefault(namespace, {})
        return self.cluster_roles if kind == "ClusterRole" else self.cluster_role_bindings

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """Every rule granted to ``user`` cluster-wide and, when ``namespace`` is given, there."""
        rules: list[Rule] = []
        for binding in self.cluster_role_bindings.values():
            if binds(binding, user) and (binding.get("roleRef") or {}).get("kind") == "ClusterRole":
                rules.extend(self._role_rules(self.cluster_roles.get(binding["roleRef"].get("name", ""))))
        if namespace:
            for binding in self.role_bindings.get(namespace, {}).values():
                if binds(binding, user):
                    rules.extend(self._role_rules(self._referenced(binding.get("roleRef") or {}, namespace)))
        return rules

    def _referenced(self, ref: dict, namespace: str) -> Optional[dict]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_roles.get(ref.get("name", ""))
        if ref.get("kind") == "Role":
            return self.roles.get(namespace, {}).get(ref.get("name", ""))
        return None

    def _role_rules(self, role: Optional[dict]) -> tuple[Rule, ...]:
        if role is None:
            return ()
        compiled = self._compiled.get(id(role))
        if compiled is None:
            compiled = self._compiled[id(role)] = tuple(Rule.of(r) for r in role.get("rules") or ())
        return compiled


class RBACAuthorizer:
    """The RBAC mode: a Policy kept from watches (``start``/``stop``), rules per (user,
    namespace) cached until the next change. ``start`` first writes the bootstrap policy
    (apiserver.auth.policy.ensure) unless ``bootstrap`` is False."""

    def __init__(self, storage, policy: Optional[Policy] = None, bootstrap: bool = True):
        self.storage, self.bootstrap = storage, bootstrap
        self.policy = policy or Policy()
        self.mirrors = [Mirror(storage, prefix, self.on_change(kind)) for kind, prefix in PREFIXES.items()]
        self._rules: dict[tuple, list[Rule]] = {}

    def on_change(self, kind: str):
        """The callback of ``kind``'s Mirror: ``(old, new)`` puts ``new`` in the policy (removes
        ``old`` when ``new`` is None) and drops the cached rules."""
        def changed(old: Optional[dict], new: Optional[dict]) -> None:
            self.policy.put(kind, new if new is not None else old, deleted=new is None)
            self._rules.clear()
        return changed

    async def start(self) -> None:
        """Write the bootstrap policy (when ``bootstrap``), then load and follow the RBAC kinds."""
        if self.bootstrap:
            await bootstrap_policy.ensure(self.storage)
        for mirror in self.mirrors:
            await mirror.start()

    async def stop(self) -> None:
        for mirror in self.mirrors:
            await mirror.stop()

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        key = (user.name, user.groups, namespace)
        rules = self._rules.get(key)
        if rules is None:
            if len(self._rules) >= CACHE_SIZE:
                self._rules.clear()
            rules = self._rules[key] = self.policy.rules_for(user, namespace)
        return rules

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        if any(rule.allows(attrs) for rule in self.rules_for(attrs.user, attrs.request.namespace)):
            return ALLOW, ""
        return NO_OPINION, ""
