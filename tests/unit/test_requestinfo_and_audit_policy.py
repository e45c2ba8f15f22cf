"""What a request asks for, read from its path (Kubernetes' RequestInfoFactory), and how an
audit policy's rules match it."""

from __future__ import annotations

import pytest

from pkube.apiserver.audit import parse_policy, timestamp
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.requestinfo import request_info


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "default", "pods", "", "", False)),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"}, ("watch", "", "default", "pods", "", "", True)),
    ("GET", "/api/v1/watch/namespaces/default/pods", {}, ("watch", "", "default", "pods", "", "", True)),
    ("POST", "/api/v1/namespaces/default/pods", {}, ("create", "", "default", "pods", "", "", False)),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale", {},
     ("patch", "apps", "ns", "deployments", "web", "scale", False)),
    ("GET", "/api/v1/namespaces/ns/pods/web/log", {}, ("get", "", "ns", "pods", "web", "log", True)),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "ns", "", False)),
    ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "ns", "namespaces", "ns", "finalize", False)),
    ("DELETE", "/api/v1/nodes", {}, ("deletecollection", "", "", "nodes", "", "", False)),
])
def test_resource_requests(method, path, query, expected):
    info = request_info(method, path, query)
    assert info.resource_request
    assert (info.verb, info.api_group, info.namespace, info.resource, info.name, info.subresource,
            info.long_running) == expected


def test_non_resource_requests_keep_the_method_as_verb():
    for path in ("/healthz", "/api", "/apis/apps/v1", "/openapi/v2"):
        info = request_info("GET", path, {})
        assert not info.resource_request and info.verb == "get" and info.read_only


POLICY = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                       "rules": [
                           {"level": "None", "nonResourceURLs": ["/healthz*"]},
                           {"level": "RequestResponse", "resources": [{"group": "", "resources": ["pods/log"]}]},
                           {"level": "Request", "resources": [{"group": "apps", "resources": ["*/scale"]}]},
                           {"level": "Metadata", "resources": [{"group": "", "resources": ["pods"],
                                                                "resourceNames": ["special"]}]},
                           {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get"]},
                           {"level": "Request", "namespaces": ["prod"], "omitStages": ["ResponseStarted"]},
                       ]})
ALICE = UserInfo("alice", groups=("devs",))
NODE = UserInfo("system:node:n1", groups=("system:nodes",))


@pytest.mark.parametrize("user, method, path, level", [
    (ALICE, "GET", "/healthz/etcd", "None"),
    (ALICE, "GET", "/api/v1/namespaces/x/pods/p/log", "RequestResponse"),
    (ALICE, "GET", "/api/v1/namespaces/x/pods/p", "None"),                  # "pods/log" is not "pods"
    (ALICE, "PUT", "/apis/apps/v1/namespaces/x/deployments/d/scale", "Request"),
    (ALICE, "PUT", "/api/v1/namespaces/x/replicationcontrollers/r/scale", "None"),   # other group
    (ALICE, "GET", "/api/v1/namespaces/x/pods/special", "Metadata"),
    (NODE, "GET", "/api/v1/namespaces/prod/pods/p", "None"),
    (NODE, "POST", "/api/v1/namespaces/prod/pods", "Request"),
    (ALICE, "GET", "/version", "None"),                                     # no rule: None
])
def test_the_first_matching_rule_decides(user, method, path, level):
    assert POLICY.level_for(request_info(method, path, {}), user)[0] == level


def test_omitted_stages_add_up():
    _, omit = POLICY.level_for(request_info("GET", "/api/v1/namespaces/prod/pods", {}), ALICE)
    assert omit == {"RequestReceived", "ResponseStarted"}


def test_timestamps_are_rfc3339_with_microseconds():
    assert timestamp(0.25) == "1970-01-01T00:00:00.250000Z"
    assert timestamp(86400.000001) == "1970-01-02T00:00:00.000001Z"
