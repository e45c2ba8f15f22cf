"""Aggregated discovery's pure parts (pkube/apiserver/discovery.py): which Accept headers ask
for it, and how an APIResourceList folds into APIResourceDiscovery entries."""

from __future__ import annotations

from pkube.apiserver import discovery

KUBECTL_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


def test_only_an_accept_offering_v2_asks_for_the_aggregated_document():
    assert discovery.wants_aggregated(KUBECTL_ACCEPT)
    assert discovery.wants_aggregated("application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io")
    assert not discovery.wants_aggregated("application/json")
    assert not discovery.wants_aggregated("")
    assert not discovery.wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
    assert not discovery.wants_aggregated("application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")


def test_subresources_fold_into_their_resource_with_their_own_kinds():
    listed = {"groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
         "verbs": ["get", "list"], "shortNames": ["deploy"], "categories": ["all"]},
        {"name": "deployments/scale", "singularName": "", "namespaced": True, "kind": "Scale",
         "group": "autoscaling", "version": "v1", "verbs": ["get", "update"]},
        {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
         "verbs": ["get"]},
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "verbs": ["get"]}]}
    deployments, nodes = discovery.aggregated_resources(listed)
    assert deployments == {
        "resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "scope": "Namespaced", "singularResource": "deployment", "verbs": ["get", "list"],
        "shortNames": ["deploy"], "categories": ["all"],
        "subresources": [
            {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
             "verbs": ["get", "update"]},
            {"subresource": "status", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
             "verbs": ["get"]}]}
    assert nodes["scope"] == "Cluster" and "subresources" not in nodes and "shortNames" not in nodes
    core = discovery.aggregated_list([("", [{"groupVersion": "v1", "resources": []}])])
    assert core["items"] == [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [],
                                                                     "freshness": "Current"}]}]
