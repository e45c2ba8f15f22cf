"""networking.k8s.io/v1: Ingress, IngressClass and NetworkPolicy validation with kube-apiserver's
field paths and messages, NetworkPolicy and IngressClass defaults, `kubectl get` rows and the
DefaultIngressClass admission plugin (pkube/api/validation_networking.py,
pkube/apiserver/tables_networking.py, pkube/apiserver/admission_networking.py)."""

import datetime as dt

import pytest

from pkube.api.causes import format_invalid
from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.admission_networking import DefaultIngressClass
from pkube.apiserver.tables import cells_for, columns_for

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CREATED = "2025-12-31T23:59:00Z"
PATH = "spec.rules[0].http.paths[0]"


@pytest.fixture(scope="module")
def validator():
    return Validator()


def messages(found):
    return {c["field"]: c["message"] for c in found}


def ingress(*paths, **spec):
    rule = {"host": "shop.example.com", "http": {"paths": list(paths)}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"rules": [rule], **spec}}


def path(path="/", path_type="Prefix", backend=None):
    found = {"path": path, "backend": {"service": {"name": "web", "port": {"number": 80}}} if backend is None
             else backend}
    if path_type is not None:
        found["pathType"] = path_type
    return found


def network_policy(**spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": "default"}, "spec": {"podSelector": {}, **spec}}


def ingress_class(**spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx", **spec}}


def test_valid_objects_pass(validator):
    assert validator.validate(ingress(path(), path("/api", "Exact"), path("", "ImplementationSpecific")),
                              strict=True) == []
    assert validator.validate(network_policy(ingress=[{"from": [{"podSelector": {"matchLabels": {"a": "b"}}}],
                                                       "ports": [{"port": 5432, "endPort": 5440}]}]),
                              strict=True) == []
    assert validator.validate(ingress_class(parameters={"kind": "Params", "name": "p", "scope": "Cluster"}),
                              strict=True) == []


def test_an_ingress_path_needs_a_path_type_from_the_three(validator):
    found = validator.validate(ingress(path(path_type=None)))
    assert found == [{"reason": "FieldValueRequired", "field": f"{PATH}.pathType",
                      "message": "Required value: pathType must be specified"}]
    assert format_invalid("Ingress", "web", found) == \
        f'Ingress "web" is invalid: {PATH}.pathType: Required value: pathType must be specified'
    assert messages(validator.validate(ingress(path(path_type="Regex")))) == {
        f"{PATH}.pathType": 'Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", '
                            '"Prefix"'}


@pytest.mark.parametrize("value, path_type, message", [
    ("api", "Prefix", 'Invalid value: "api": must be an absolute path'),
    ("", "Exact", 'Invalid value: "": must be an absolute path'),
    ("api", "ImplementationSpecific", 'Invalid value: "api": must be an absolute path'),
    ("/a//b", "Prefix", "Invalid value: \"/a//b\": must not contain '//'"),
    ("/a/..", "Exact", "Invalid value: \"/a/..\": cannot end with '/..'"),
])
def test_paths_of_exact_and_prefix_are_absolute(validator, value, path_type, message):
    assert messages(validator.validate(ingress(path(value, path_type)))) == {f"{PATH}.path": message}


@pytest.mark.parametrize("backend, field, message", [
    ({}, "backend", 'Invalid value: "": resource or service backend is required'),
    ({"service": {"name": "web", "port": {"number": 80}}, "resource": {"kind": "Bucket", "name": "b"}},
     "backend", 'Invalid value: "": cannot set both resource and service backends'),
    ({"service": {"name": "web", "port": {}}}, "backend", "Required value: port name or number is required"),
    ({"service": {"name": "web", "port": {"name": "http", "number": 80}}},
     "backend", 'Invalid value: "": cannot set both port name & port number'),
    ({"service": {"name": "web", "port": {"number": 70000}}},
     "backend.service.port.number", "Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ({"service": {"name": "Web", "port": {"number": 80}}}, "backend.service.name",
     "Invalid value: \"Web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
     "start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
     "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
    ({"resource": {"kind": "Bucket"}}, "backend.resource.name", "Required value: name is required"),
])
def test_a_backend_has_one_of_service_or_resource_and_one_port(validator, backend, field, message):
    assert messages(validator.validate(ingress(path(backend=backend)))) == {f"{PATH}.{field}": message}


def test_ingress_spec_hosts_tls_and_class(validator):
    empty = ingress()
    empty["spec"] = {}
    assert messages(validator.validate(empty)) == {
        "spec": "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"}
    only_default = ingress()
    only_default["spec"] = {"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}
    assert validator.validate(only_default) == []
    by_ip = ingress(path())
    by_ip["spec"]["rules"][0]["host"] = "10.0.0.1"
    assert messages(validator.validate(by_ip)) == {
        "spec.rules[0].host": 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'}
    wildcard = ingress(path(), tls=[{"hosts": ["*.example.com", "a*.example.com"], "secretName": "tls"}])
    wildcard["spec"]["rules"][0]["host"] = "*.example.com"
    assert list(messages(validator.validate(wildcard))) == ["spec.tls[0].hosts[1]"]
    classed = ingress(path(), ingressClassName="nginx")
    classed["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "traefik"}
    assert messages(validator.validate(classed)) == {
        "annotations.kubernetes.io/ingress.class": 'Invalid value: "traefik": must match `ingressClassName` '
                                                   "when both are specified"}


def test_network_policy_types_protocols_ports_and_peers(validator):
    bad_types = network_policy(policyTypes=["Ingress", "Sideways"])
    assert messages(validator.validate(bad_types)) == {
        "spec.policyTypes[1]": 'Unsupported value: "Sideways": supported values: "Ingress", "Egress"'}
    three = network_policy(policyTypes=["Ingress", "Egress", "Ingress"])
    assert messages(validator.validate(three)) == {"spec.policyTypes": 'Invalid value: []networking.PolicyType'
                                                   '{"Ingress", "Egress", "Ingress"}: may not specify more than two '
                                                   "policyTypes"}
    icmp = network_policy(egress=[{"ports": [{"protocol": "ICMP", "port": 53}]}])
    assert messages(validator.validate(icmp)) == {
        "spec.egress[0].ports[0].protocol": 'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'}
    ports = network_policy(ingress=[{"ports": [{"port": 80, "endPort": 79}, {"port": "http", "endPort": 90},
                                               {"endPort": 90}]}])
    assert messages(validator.validate(ports)) == {
        "spec.ingress[0].ports[0].endPort": "Invalid value: 80: must be greater than or equal to `port`",
        "spec.ingress[0].ports[1].endPort": "Invalid value: 90: may not be specified when `port` is non-numeric",
        "spec.ingress[0].ports[2].endPort": "Invalid value: 90: may not be specified when `port` is not specified"}
    peers = network_policy(ingress=[{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]},
                                                   "podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/33"}}]}])
    assert messages(validator.validate(peers)) == {
        "spec.ingress[0].from[0]": "Required value: must specify a peer",
        "spec.ingress[0].from[1].ipBlock.except[0]": 'Invalid value: "11.0.0.0/16": must be a strict subset of '
                                                     "`cidr`",
        "spec.ingress[0].from[1]": "Forbidden: may not specify both ipBlock and another peer",
        "spec.ingress[0].from[2].ipBlock.cidr": 'Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. '
                                                '10.9.8.0/24 or 2001:db8::/64)'}


def test_ingress_class_controller_and_parameters(validator):
    assert messages(validator.validate(ingress_class(controller=""))) == {"spec.controller": "Required value"}
    assert messages(validator.validate(ingress_class(controller="nginx"))) == {
        "spec.controller": 'Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")'}
    assert validator.validate(ingress_class(parameters={"kind": "Params", "name": "p"})) == []   # before defaults
    namespaced = ingress_class(parameters={"kind": "Params", "name": "p", "scope": "Namespace"})
    assert messages(validator.validate(namespaced)) == {
        "spec.parameters.namespace": "Required value: `parameters.scope` is set to 'Namespace'"}
    old = ingress_class()
    assert messages(validator.validate(ingress_class(controller="example.com/other"), old)) == {
        "spec.controller": 'Invalid value: "example.com/other": field is immutable'}


def test_network_policy_and_ingress_class_defaults():
    only_ingress = network_policy(ingress=[{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}])
    apply_defaults(only_ingress)
    assert only_ingress["spec"]["policyTypes"] == ["Ingress"]
    assert [p["protocol"] for p in only_ingress["spec"]["ingress"][0]["ports"]] == ["TCP", "UDP"]
    with_egress = network_policy(egress=[{"ports": [{"port": 53}]}])
    apply_defaults(with_egress)
    assert with_egress["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert with_egress["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    chosen = network_policy(policyTypes=["Egress"], egress=[{}])
    apply_defaults(chosen)
    assert chosen["spec"]["policyTypes"] == ["Egress"]
    parameters = ingress_class(parameters={"kind": "Params", "name": "p"})
    apply_defaults(parameters)
    assert parameters["spec"]["parameters"]["scope"] == "Cluster"


def test_table_rows_as_kubectl_prints_them():
    assert [c.name for c in columns_for("ingresses")] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    assert [c.name for c in columns_for("ingressclasses")] == ["Name", "Controller", "Parameters", "Age"]
    assert [c.name for c in columns_for("networkpolicies")] == ["Name", "Pod-Selector", "Age"]
    meta = {"name": "web", "creationTimestamp": CREATED}
    rules = [{"host": f"h{i}.example.com"} for i in range(3)] + [{}, {"host": "h4.example.com"}]
    ing = {"metadata": meta, "spec": {"ingressClassName": "nginx", "rules": rules, "tls": [{"hosts": ["a"]}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb.example.com"},
                                                   {"ip": "10.0.0.9"}]}}}
    assert cells_for("ingresses", ing, NOW) == [
        "web", "nginx", "h0.example.com,h1.example.com,h2.example.com + 2 more...", "10.0.0.9,lb.example.com",
        "80, 443", "60s"]
    bare = {"metadata": meta, "spec": {"defaultBackend": {}}, "status": {"loadBalancer": {}}}
    assert cells_for("ingresses", bare, NOW) == ["web", "<none>", "*", "", "80", "60s"]
    cls = {"metadata": meta, "spec": {"controller": "k8s.io/ingress-nginx",
                                      "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}}
    assert cells_for("ingressclasses", cls, NOW) == ["web", "k8s.io/ingress-nginx", "Params.k8s.example.com/p", "60s"]
    assert cells_for("ingressclasses", {"metadata": meta, "spec": {"controller": "x.io/c"}}, NOW)[2] == "<none>"
    policy = {"metadata": meta, "spec": {"podSelector": {"matchLabels": {"app": "db"}}}}
    assert cells_for("networkpolicies", policy, NOW) == ["web", "app=db", "60s"]
    assert cells_for("networkpolicies", {"metadata": meta, "spec": {"podSelector": {}}}, NOW)[1] == "<none>"


def admitted(obj, classes, operation=CREATE):
    plugin = DefaultIngressClass(store=None)
    plugin.objects = {c["metadata"]["name"]: c for c in classes}
    target = type("Target", (), {"info": type("Info", (), {"builtin_kind": "Ingress"})(), "subresource": None})()
    plugin.mutate(AdmissionRequest(operation, target, obj, None, None))
    return obj["spec"].get("ingressClassName")


def test_an_ingress_without_a_class_gets_the_newest_default_one():
    def cls(name, created, default=True):
        annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
        return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}}
    classes = [cls("old", "2025-01-01T00:00:00Z"), cls("b", "2026-01-01T00:00:00Z"),
               cls("a", "2026-01-01T00:00:00Z"), cls("newest", "2026-06-01T00:00:00Z", default=False)]
    assert admitted(ingress(path()), classes) == "a"           # newest default, then by name (upstream's order)
    assert admitted(ingress(path(), ingressClassName="nginx"), classes) == "nginx"
    annotated = ingress(path())
    annotated["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "traefik"}
    assert admitted(annotated, classes) is None
    assert admitted(ingress(path()), classes[3:]) is None
    assert admitted(ingress(path()), classes, operation=UPDATE) is None
