"""The Node authorizer's graph and decisions, NodeRestriction's refusals and the bootstrap
policy's reconciliation, as pure logic (the integration tests drive them over HTTP)."""

from __future__ import annotations

import pytest

from pkube.api.kinds import Registry
from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.auth.attributes import resource_attributes
from pkube.apiserver.auth.node import NodeAuthorizer, NodeGraph, pod_refs
from pkube.apiserver.auth.noderestriction import NodeRestriction
from pkube.apiserver.auth.policy import AUTOUPDATE, bootstrap_objects, reconciled
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.paths import Target

N1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))


def pod(name, node, **spec):
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"nodeName": node, **spec}}


def ask(verb, resource, name="", namespace="ns", subresource="", group="", user=N1):
    return resource_attributes(user, verb, group, "v1", namespace, resource, subresource, name)


def test_pod_refs_cover_volumes_env_pull_secrets_and_the_service_account():
    refs = pod_refs(pod("p", "n1", serviceAccountName="sa", imagePullSecrets=[{"name": "pull"}],
                        volumes=[{"name": "a", "secret": {"secretName": "vol"}},
                                 {"name": "b", "configMap": {"name": "cm"}},
                                 {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                                 {"name": "d", "projected": {"sources": [{"secret": {"name": "proj"}},
                                                                         {"configMap": {"name": "pcm"}}]}},
                                 {"name": "e", "ephemeral": {}}],
                        containers=[{"name": "c", "envFrom": [{"secretRef": {"name": "envfrom"}}],
                                     "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "envcm"}}}]}]))
    assert refs == {("serviceaccounts", "ns", "sa"), ("secrets", "ns", "pull"), ("secrets", "ns", "vol"),
                    ("configmaps", "ns", "cm"), ("persistentvolumeclaims", "ns", "claim"),
                    ("secrets", "ns", "proj"), ("configmaps", "ns", "pcm"), ("persistentvolumeclaims", "ns", "p-e"),
                    ("secrets", "ns", "envfrom"), ("configmaps", "ns", "envcm")}


def test_the_graph_follows_binding_rebinding_and_deletion():
    graph = NodeGraph()
    shared = [{"name": "v", "secret": {"secretName": "s"}}]
    first, second = pod("a", "n1", volumes=shared), pod("b", "n1", volumes=shared)
    graph.pod_changed(None, first)
    graph.pod_changed(None, second)
    graph.pod_changed(first, None)
    assert graph.related("n1", "secrets", "ns", "s")          # b still uses it
    moved = pod("b", "n2", volumes=shared)
    graph.pod_changed(second, moved)
    assert not graph.related("n1", "secrets", "ns", "s")
    assert graph.related("n2", "secrets", "ns", "s")
    graph.pod_changed(None, pod("pending", "", volumes=[{"name": "v", "secret": {"secretName": "t"}}]))
    assert not any(graph.related(n, "secrets", "ns", "t") for n in ("n1", "n2", ""))


def test_persistent_volumes_are_reached_through_the_bound_claim():
    graph = NodeGraph()
    graph.pod_changed(None, pod("a", "n1", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]))
    claim = {"metadata": {"name": "c", "namespace": "ns"}, "spec": {"volumeName": "pv1"}}
    graph.claim_changed(None, claim)
    assert graph.related("n1", "persistentvolumes", "", "pv1")
    assert not graph.related("n1", "persistentvolumes", "", "pv2")
    graph.claim_changed(claim, None)
    assert not graph.related("n1", "persistentvolumes", "", "pv1")


@pytest.fixture
def node_authorizer():
    authorizer = NodeAuthorizer()
    authorizer.graph.pod_changed(None, pod("mine", "n1", serviceAccountName="sa",
                                           volumes=[{"name": "v", "secret": {"secretName": "s1"}}]))
    authorizer.graph.pod_changed(None, pod("theirs", "n2", volumes=[{"name": "v", "secret": {"secretName": "s2"}}]))
    return authorizer


@pytest.mark.parametrize("question, allowed, reason", [
    (ask("get", "secrets", "s1"), True, ""),
    (ask("watch", "secrets", "s1"), True, ""),                       # field-selected on metadata.name
    (ask("get", "secrets", "s2"), False, "no relationship found between node 'n1' and this object"),
    (ask("list", "secrets"), False, "can only get individual resources of this type"),
    (ask("update", "secrets", "s1"), False, "can only read resources of this type"),
    (ask("create", "serviceaccounts", "sa", subresource="token"), True, ""),
    (ask("create", "serviceaccounts", "other", subresource="token"), False,
     "no relationship found between node 'n1' and this object"),
    (ask("patch", "nodes", "n1", "", "status"), True, ""),
    (ask("patch", "nodes", "n2", "", "status"), False, "node 'n1' cannot modify node 'n2'"),
    (ask("get", "nodes", "n2", ""), True, ""),
    (ask("update", "leases", "n1", "kube-node-lease", group="coordination.k8s.io"), True, ""),
    (ask("update", "leases", "n2", "kube-node-lease", group="coordination.k8s.io"), False,
     "can only access node lease with the same name as the requesting node"),
    (ask("get", "leases", "n1", "kube-system", group="coordination.k8s.io"), False,
     "can only access node lease with the same name as the requesting node"),
    (ask("watch", "pods"), True, ""),
    (ask("patch", "pods", "mine", subresource="status"), True, ""),
    (ask("delete", "pods", "mine"), True, ""),
    (ask("delete", "pods", "theirs"), False, "node 'n1' can only delete pods bound to itself"),
    (ask("create", "deployments", group="apps"), False, ""),
])
def test_node_decisions(node_authorizer, question, allowed, reason):
    decision, why = node_authorizer.authorize(question)
    assert (decision == "Allow", why) == (allowed, reason)


def test_users_that_are_not_nodes_get_no_opinion(node_authorizer):
    impostor = UserInfo("system:node:n1")          # the name without the group
    assert node_authorizer.authorize(ask("get", "secrets", "s1", user=impostor)) == ("NoOpinion", "")


# ---- NodeRestriction

REGISTRY = Registry()


def admission(operation, kind, obj, old=None, name="", namespace="ns", subresource=None, user=N1):
    info = REGISTRY.by_kind(kind)
    target = Target(info, namespace if info.namespaced else None, name or None, subresource)
    return AdmissionRequest(operation, target, obj, old, user)


def refusal(request) -> str:
    try:
        NodeRestriction().validate(request)
    except errors.ApiError as exc:
        assert exc.code == 403
        return exc.message
    return ""


MIRROR = {"kubernetes.io/config.mirror": "hash"}


@pytest.mark.parametrize("request_, problem", [
    (admission(CREATE, "Pod", {"metadata": {"name": "p", "annotations": MIRROR}, "spec": {"nodeName": "n1"}}), ""),
    (admission(CREATE, "Pod", {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}}),
     'pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create '
     "mirror pods"),
    (admission(CREATE, "Pod", {"metadata": {"name": "p", "annotations": MIRROR}, "spec": {"nodeName": "n2"}}),
     'pods "p" is forbidden: node "n1" can only create pods with spec.nodeName set to itself'),
    (admission(CREATE, "Pod", {"metadata": {"name": "p", "annotations": MIRROR}, "spec": {
        "nodeName": "n1", "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {}}]}}]}}),
     'pods "p" is forbidden: node "n1" can not create pods that reference serviceaccounts'),
    (admission(UPDATE, "Pod", {}, {"spec": {"nodeName": "n2"}}, "p", subresource="status"),
     'pods "p" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself'),
    (admission(UPDATE, "Pod", {}, {"spec": {"nodeName": "n1"}}, "p", subresource="status"), ""),
    (admission(UPDATE, "Node", {"metadata": {"name": "n2"}}, {"metadata": {"name": "n2"}}, "n2"),
     'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'),
    (admission(CREATE, "Node", {"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/x": "y"}}}),
     'nodes "n1" is forbidden: node "n1" is not allowed to modify labels: node-restriction.kubernetes.io/x'),
    (admission(UPDATE, "Node", {"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/x": "y",
                                                                      "a": "c"}}},
               {"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/x": "y", "a": "b"}}}, "n1"), ""),
    (admission(CREATE, "Lease", {"metadata": {"name": "n2"}}, namespace="kube-node-lease"),
     'leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the '
     "requesting node"),
    (admission(CREATE, "Lease", {"metadata": {"name": "n1"}}, namespace="kube-node-lease"), ""),
    (admission(CREATE, "Pod", {"metadata": {"name": "p"}, "spec": {}}, user=UserInfo("alice")), ""),
    (admission(CREATE, "Pod", {"metadata": {"name": "p"}, "spec": {}}, user=None), ""),
])
def test_node_restriction(request_, problem):
    assert refusal(request_) == problem


# ---- the bootstrap policy

def test_reconciliation_adds_what_is_missing_only_while_autoupdate_is_true():
    wanted = dict(bootstrap_objects())["/registry/clusterroles/view"]
    trimmed = {**wanted, "rules": wanted["rules"][:1] + [{"verbs": ["get"], "apiGroups": ["x"], "resources": ["y"]}]}
    merged = reconciled(trimmed, wanted)
    assert all(rule in merged["rules"] for rule in wanted["rules"])
    assert {"verbs": ["get"], "apiGroups": ["x"], "resources": ["y"]} in merged["rules"]     # a user's addition stays
    frozen = {**trimmed, "metadata": {**trimmed["metadata"], "annotations": {AUTOUPDATE: "false"}}}
    assert reconciled(frozen, wanted) is frozen


def test_view_never_reads_secrets_and_every_binding_names_a_bootstrap_role():
    objects = dict(bootstrap_objects())
    for name in ("view",):
        assert not any("secrets" in r.get("resources", ()) for r in objects[f"/registry/clusterroles/{name}"]["rules"])
    roles = {obj["metadata"]["name"] for obj in objects.values() if obj["kind"] == "ClusterRole"}
    for obj in objects.values():
        if obj["kind"] == "ClusterRoleBinding":
            assert obj["roleRef"]["name"] in roles
