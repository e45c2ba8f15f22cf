"""RBAC evaluated Kubernetes' way: rule matching (verbs, groups, resources with subresources
and ``*/x``, resourceNames, nonResourceURLs), subjects, bindings and the 403 messages."""

from __future__ import annotations

import pytest

from pkube.apiserver.auth.attributes import connect_verbs, non_resource_attributes, request_attributes, resource_attributes
from pkube.apiserver.auth.authorizer import ALLOW, NO_OPINION, Union, forbidden
from pkube.apiserver.auth.rbac import Policy, RBACAuthorizer, Rule, subject_matches
from pkube.apiserver.auth.user import UserInfo

ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))


def attrs(verb="get", resource="pods", subresource="", name="", group="", namespace="default", user=ALICE):
    return resource_attributes(user, verb, group, "v1", namespace, resource, subresource, name)


def url(path, verb="get", user=ALICE):
    return non_resource_attributes(user, verb, path)


@pytest.mark.parametrize("rule, request_attrs, allowed", [
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, attrs(), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, attrs(verb="list"), False),
    ({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}, attrs(verb="delete"), True),
    ({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]}, attrs(), False),
    ({"verbs": ["get"], "apiGroups": ["*"], "resources": ["deployments"]},
     attrs(resource="deployments", group="apps"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}, attrs(resource="secrets"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}, attrs(subresource="log"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, attrs(subresource="log"), False),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}, attrs(subresource="log"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}, attrs(), False),
    ({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["*/scale"]},
     attrs(resource="deployments", subresource="scale", group="apps"), True),
    ({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["*/scale"]}, attrs(resource="deployments", group="apps"),
     False),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]},
     attrs(resource="secrets", name="a"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]},
     attrs(resource="secrets", name="b"), False),
    ({"verbs": ["list"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]},
     attrs(verb="list", resource="secrets"), False),      # a list has no name
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, url("/healthz"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, url("/healthz/etcd"), False),
    ({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}, url("/apis/apps/v1"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["*"]}, url("/anything"), True),
    ({"verbs": ["get"], "nonResourceURLs": ["*"]}, attrs(), False),               # URLs never grant resources
    ({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}, url("/apis"), False),
])
def test_rule_matching(rule, request_attrs, allowed):
    assert Rule.of(rule).allows(request_attrs) is allowed


@pytest.mark.parametrize("subject, binding_namespace, user, applies", [
    ({"kind": "User", "name": "alice"}, "", ALICE, True),
    ({"kind": "User", "name": "bob"}, "", ALICE, False),
    ({"kind": "Group", "name": "devs"}, "x", ALICE, True),
    ({"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, "", UserInfo("system:serviceaccount:ns:sa"), True),
    ({"kind": "ServiceAccount", "name": "sa"}, "ns", UserInfo("system:serviceaccount:ns:sa"), True),
    ({"kind": "ServiceAccount", "name": "sa"}, "", UserInfo("system:serviceaccount:ns:sa"), False),
    ({"kind": "ServiceAccount", "name": "sa", "namespace": "other"}, "ns", UserInfo("system:serviceaccount:ns:sa"),
     False),
])
def test_subjects(subject, binding_namespace, user, applies):
    assert subject_matches(subject, user, binding_namespace) is applies


def _role(kind, name, rules, namespace=None):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def _binding(kind, name, role_kind, role, subjects, namespace=None):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role}, "subjects": subjects}


def policy() -> Policy:
    p = Policy()
    p.put("ClusterRole", _role("ClusterRole", "reader", [{"verbs": ["get", "list"], "apiGroups": [""],
                                                            "resources": ["pods"]}]))
    p.put("Role", _role("Role", "cm", [{"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]}], "team"))
    p.put("RoleBinding", _binding("RoleBinding", "a", "ClusterRole", "reader", [{"kind": "Group", "name": "devs"}],
                                  "team"))
    p.put("RoleBinding", _binding("RoleBinding", "b", "Role", "cm", [{"kind": "User", "name": "alice"}], "team"))
    return p


def test_role_bindings_grant_only_in_their_namespace():
    rbac = RBACAuthorizer(None, policy(), bootstrap=False)
    assert rbac.authorize(attrs(verb="list", namespace="team"))[0] == ALLOW
    assert rbac.authorize(attrs(verb="list", namespace="default"))[0] == NO_OPINION
    assert rbac.authorize(attrs(verb="list", namespace=""))[0] == NO_OPINION     # all namespaces
    assert rbac.authorize(attrs(verb="create", resource="configmaps", namespace="team"))[0] == ALLOW


def test_a_cluster_role_binding_grants_everywhere_and_changes_are_seen():
    rbac = RBACAuthorizer(None, policy(), bootstrap=False)
    changed = rbac.on_change("ClusterRoleBinding")
    binding = _binding("ClusterRoleBinding", "all", "ClusterRole", "reader", [{"kind": "User", "name": "alice"}])
    assert rbac.authorize(attrs(namespace="default"))[0] == NO_OPINION     # cached as "no"
    changed(None, binding)
    assert rbac.authorize(attrs(namespace="default"))[0] == ALLOW
    assert rbac.authorize(attrs(verb="list", namespace=""))[0] == ALLOW
    changed(binding, None)
    assert rbac.authorize(attrs(namespace="default"))[0] == NO_OPINION


def test_a_binding_to_a_missing_role_grants_nothing():
    p = Policy()
    p.put("RoleBinding", _binding("RoleBinding", "x", "Role", "gone", [{"kind": "User", "name": "alice"}], "team"))
    assert p.rules_for(ALICE, "team") == []


def test_masters_are_allowed_before_any_authorizer():
    admin = UserInfo("root", groups=("system:masters",))
    assert Union([RBACAuthorizer(None, Policy(), bootstrap=False)]).allowed(attrs(verb="delete", user=admin))


@pytest.mark.parametrize("request_attrs, message", [
    (attrs(verb="list", resource="secrets"),
     'secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "default"'),
    (attrs(verb="get", resource="secrets", name="s"),
     'secrets "s" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "default"'),
    (attrs(verb="list", resource="nodes", namespace=""),
     'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope'),
    (attrs(verb="update", resource="deployments", subresource="scale", group="apps", name="web"),
     'deployments.apps "web" is forbidden: User "alice" cannot update resource "deployments/scale" in API group '
     '"apps" in the namespace "default"'),
    (url("/apis"), 'forbidden: User "alice" cannot get path "/apis"'),
])
def test_forbidden_messages_are_kubernetes(request_attrs, message):
    error = forbidden(request_attrs)
    assert (error.code, error.reason, error.message) == (403, "Forbidden", message)


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/api/v1/namespaces/default/pods", "", ("list", "pods", "", "", "default")),
    ("GET", "/api/v1/namespaces/default/pods", "watch=true", ("watch", "pods", "", "", "default")),
    ("GET", "/api/v1/watch/namespaces/default/pods/p", "", ("watch", "pods", "", "p", "default")),
    ("GET", "/api/v1/namespaces/default/secrets", "fieldSelector=metadata.name%3Ds1&watch=1",
     ("watch", "secrets", "", "s1", "default")),
    ("GET", "/api/v1/namespaces/default/secrets", "fieldSelector=metadata.name%3Ds1%2Ctype%3Dx",
     ("list", "secrets", "", "", "default")),
    ("POST", "/api/v1/namespaces/default/pods/p/exec", "command=ls", ("create", "pods", "exec", "p", "default")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", "", ("patch", "deployments", "scale", "d", "ns")),
    ("DELETE", "/api/v1/namespaces/ns/pods", "", ("deletecollection", "pods", "", "", "ns")),
    ("GET", "/api/v1/namespaces/ns", "", ("get", "namespaces", "", "ns", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", "", ("update", "namespaces", "finalize", "ns", "ns")),
    ("GET", "/api/v1/nodes", "", ("list", "nodes", "", "", "")),
])
def test_request_attributes(method, path, query, expected):
    got = request_attributes(ALICE, method, path, query).request
    assert got.resource_request
    assert (got.verb, got.resource, got.subresource, got.name, got.namespace) == expected


def test_non_resource_requests_and_the_websocket_exec_verbs():
    discovery = request_attributes(ALICE, "GET", "/apis/apps/v1", "").request
    assert (discovery.resource_request, discovery.verb, discovery.path) == (False, "get", "/apis/apps/v1")
    exec_ws = request_attributes(ALICE, "GET", "/api/v1/namespaces/d/pods/p/exec", "command=ls")
    assert connect_verbs(exec_ws) == ("get", "create")
    assert connect_verbs(request_attributes(ALICE, "GET", "/api/v1/namespaces/d/pods/p/log", "")) == ("get",)
