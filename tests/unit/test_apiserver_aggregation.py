"""The pure parts of API aggregation: Local APIServices, the Available condition, endpoint
choice, the front-proxy headers, the aggregated groups' discovery and the printer."""

from __future__ import annotations

import datetime

from pkube.apiserver import aggregation, tables
from pkube.apiserver.auth.user import UserInfo


def test_local_apiservices_carry_upstreams_priorities():
    core = aggregation.local_apiservice("", "v1", False, "t")
    assert core["metadata"]["name"] == "v1."
    assert core["spec"] == {"group": "", "version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}
    crd = aggregation.local_apiservice("example.com", "v1", True, "t")
    assert crd["spec"]["groupPriorityMinimum"] == 1000 and crd["spec"]["versionPriority"] == 100
    assert crd["metadata"]["labels"] == {aggregation.AUTOMANAGED: "true"}
    assert core["status"]["conditions"][0]["reason"] == "Local"


def test_the_available_condition_keeps_its_transition_time_while_unchanged():
    service = {"status": {"conditions": [aggregation.available("False", "MissingEndpoints", "m", "t1")]}}
    same = aggregation.with_available(service, aggregation.available("False", "FailedDiscoveryCheck", "x", "t2"))
    assert same["status"]["conditions"] == [{"type": "Available", "status": "False", "lastTransitionTime": "t1",
                                             "reason": "FailedDiscoveryCheck", "message": "x"}]
    flipped = aggregation.with_available(same, aggregation.available("True", "Passed", "all checks passed", "t3"))
    assert flipped["status"]["conditions"][0]["lastTransitionTime"] == "t3"


def test_the_endpoint_is_the_first_address_with_the_service_ports_name():
    endpoints = {"subsets": [{"addresses": [], "ports": [{"name": "https", "port": 1}]},
                             {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "metrics", "port": 9},
                                                                           {"name": "https", "port": 8443}]}]}
    assert aggregation.endpoint_for(endpoints, {"name": "https", "port": 443}) == ("10.0.0.2", 8443)
    assert aggregation.endpoint_for(endpoints, {"name": "other", "port": 443}) is None
    unnamed = {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 6443}]}]}
    assert aggregation.endpoint_for(unnamed, {"port": 443}) == ("127.0.0.1", 6443)


def test_front_proxy_headers():
    alice = UserInfo("alice", groups=("devs", "system:authenticated"), extra={"scopes": ["a", "b"]})
    assert aggregation.remote_user_headers(alice) == [
        ("X-Remote-User", "alice"), ("X-Remote-Group", "devs"), ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-scopes", "a"), ("X-Remote-Extra-scopes", "b")]
    pod = UserInfo("system:serviceaccount:ns:sa", extra={"authentication.kubernetes.io/pod-name": ["web-1"]})
    assert aggregation.remote_user_headers(pod)[-1] == ("X-Remote-Extra-authentication.kubernetes.io%2Fpod-name", "web-1")


def test_aggregated_groups_order_versions_by_priority():
    agg = aggregation.Aggregator.__new__(aggregation.Aggregator)
    agg.proxied = {("w.io", v): {"spec": {"group": "w.io", "version": v, "versionPriority": p}}
                   for v, p in (("v1alpha1", 15), ("v1", 15), ("v2beta1", 20))}
    (group,) = agg.groups()
    assert [v["version"] for v in group["versions"]] == ["v2beta1", "v1", "v1alpha1"]
    assert group["preferredVersion"]["version"] == "v2beta1"
    assert agg.aggregated("/apis/w.io/v1/namespaces/x/things") is agg.proxied[("w.io", "v1")]
    assert agg.aggregated("/apis/apps/v1/deployments") is None


def test_kubectl_columns():
    now = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.timezone.utc)
    local = aggregation.local_apiservice("apps", "v1", False, "t")
    local["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert tables.cells_for("apiservices", local, now) == ["v1.apps", "Local", "True", "10m"]
    proxied = {"metadata": {"name": "v1.w.io", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"service": {"namespace": "ns", "name": "w"}},
               "status": {"conditions": [aggregation.available("False", "MissingEndpoints", "m", "t")]}}
    assert tables.cells_for("apiservices", proxied, now)[1:3] == ["ns/w", "False (MissingEndpoints)"]
