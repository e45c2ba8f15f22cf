"""Semantic checks and defaults of Ingresses, IngressClasses and NetworkPolicies
(networking.k8s.io/v1), as Kubernetes' pkg/apis/networking/validation and
pkg/apis/networking/v1/defaults.go do, with upstream's field paths and words.

Create checks are registered in ``api.validation_specs.BY_KIND``, update checks in
``api.validation._UPDATE_BY_KIND``, defaults in ``api.defaults._BY_KIND``. Import
``api.validation`` first, not this module: it takes its helpers from ``validation_specs``.
Nothing here acts on these objects: pkube stores and serves them (no ingress controller,
no NetworkPolicy enforcement).
"""

from __future__ import annotations

import ipaddress
import json
import re

from pkube.api import causes, names
from pkube.api.validation_policy import _selector
from pkube.api.validation_specs import (PORT_MAX, as_dict, dict_items, iana_service_name, in_range,
                                        is_int, syntax)

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
POLICY_TYPES = ("Ingress", "Egress")
PARAMETER_SCOPES = ("Cluster", "Namespace")
NETWORK_POLICY_PROTOCOLS = ("TCP", "UDP", "SCTP")      # upstream lists them in this order
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CONTROLLER_MAX = 250
_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH_RE = re.compile(_HTTP_PATH_FMT)


# --- Ingress ------------------------------------------------------------------------------------

def ingress(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = []
    if not spec.get("rules") and spec.get("defaultBackend") is None:
        shown = "[]networking.IngressRule{}" if spec.get("rules") == [] else "[]networking.IngressRule(nil)"
        found.append(causes.make(causes.INVALID, "spec", f"Invalid value: {shown}: "
                                 "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        found += _backend(as_dict(spec["defaultBackend"]), "spec.defaultBackend")
    for _, rule, where in dict_items(spec.get("rules"), "spec.rules"):
        found += _rule(rule, where)
    for _, tls, where in dict_items(spec.get("tls"), "spec.tls"):
        found += _tls(tls, where)
    if spec.get("ingressClassName") is not None:
        found += syntax("spec.ingressClassName", spec["ingressClassName"], names.dns1123_subdomain)
    annotation = as_dict(as_dict(obj.get("metadata")).get("annotations")).get(CLASS_ANNOTATION)
    if annotation is not None and spec.get("ingressClassName") not in (None, annotation):
        found.append(causes.invalid(f"annotations.{CLASS_ANNOTATION}", annotation,
                                    "must match `ingressClassName` when both are specified"))
    return found


def _host(host, path: str) -> list:
    if not isinstance(host, str) or not host:
        return []
    found = []
    try:
        ipaddress.ip_address(host)
        found.append(causes.invalid(path, host, "must be a DNS name, not an IP address"))
    except ValueError:
        pass
    check = names.wildcard_dns1123_subdomain if "*" in host else names.dns1123_subdomain
    return found + syntax(path, host, check)


def _rule(rule: dict, where: str) -> list:
    found = _host(rule.get("host"), f"{where}.host")
    http = rule.get("http")
    if isinstance(http, dict):
        if not http.get("paths"):
            found.append(causes.required(f"{where}.http.paths"))
        for _, path, at in dict_items(http.get("paths"), f"{where}.http.paths"):
            found += _http_path(path, at)
    return found


def _http_path(path: dict, where: str) -> list:
    path_type, value = path.get("pathType"), path.get("path") or ""
    if path_type is None:
        return [causes.required(f"{where}.pathType", "pathType must be specified")]
    found = []
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            found.append(causes.invalid(f"{where}.path", value, "must be an absolute path"))
        found += [causes.invalid(f"{where}.path", value, f"must not contain '{sequence}'")
                  for sequence in INVALID_PATH_SEQUENCES if value and sequence in value]
        found += [causes.invalid(f"{where}.path", value, f"cannot end with '{suffix}'")
                  for suffix in INVALID_PATH_SUFFIXES if value and value.endswith(suffix)]
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            found.append(causes.invalid(f"{where}.path", value, "must be an absolute path"))
    else:
        found.append(causes.not_supported(f"{where}.pathType", path_type, PATH_TYPES))
    return found + _backend(as_dict(path.get("backend")), f"{where}.backend")


def _backend(backend: dict, where: str) -> list:
    """Exactly one of service (with a name and one of port name or number) or resource."""
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [causes.invalid(where, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_reference(as_dict(resource), f"{where}.resource")
    if service is None:
        return [causes.invalid(where, "", "resource or service backend is required")]
    service = as_dict(service)
    found = [causes.required(f"{where}.service.name")] if not service.get("name") else \
        syntax(f"{where}.service.name", service["name"], names.dns1035_label)
    port = as_dict(service.get("port"))
    name, number = port.get("name") or "", port.get("number") or 0
    if name and number:
        found.append(causes.invalid(where, "", "cannot set both port name & port number"))
    elif name:
        found += iana_service_name(f"{where}.service.port.name", name)
    elif number:
        found += in_range(f"{where}.service.port.number", number, 1, PORT_MAX)
    else:
        found.append(causes.required(where, "port name or number is required"))
    return found


def _typed_reference(reference: dict, where: str) -> list:
    found = []
    if reference.get("apiGroup") is not None:
        found += syntax(f"{where}.apiGroup", reference["apiGroup"], names.dns1123_subdomain)
    for field in ("kind", "name"):
        if not reference.get(field):
            found.append(causes.required(f"{where}.{field}", f"{field} is required"))
        else:
            found += syntax(f"{where}.{field}", reference[field], names.path_segment_name)
    return found


def _tls(tls: dict, where: str) -> list:
    found = []
    for index, host in enumerate(tls.get("hosts") or []):
        if isinstance(host, str):
            check = names.wildcard_dns1123_subdomain if "*" in host else names.dns1123_subdomain
            found += syntax(f"{where}.hosts[{index}]", host, check)
    if tls.get("secretName"):
        found += syntax(f"{where}.secretName", tls["secretName"], names.dns1123_subdomain)
    return found


# --- IngressClass -------------------------------------------------------------------------------

def ingress_class(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    controller = spec.get("controller") or ""
    found = []
    if len(controller) > CONTROLLER_MAX:
        found.append(causes.too_long("spec.controller", CONTROLLER_MAX, "bytes"))
    found += _domain_prefixed_path("spec.controller", controller)
    if spec.get("parameters") is not None:
        found += _parameters(as_dict(spec["parameters"]), "spec.parameters")
    return found


def _domain_prefixed_path(field: str, value: str) -> list:
    if not value:
        return [causes.required(field)]
    host, _, path = value.partition("/")
    if not host or not path:
        return [causes.invalid(field, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    found = syntax(field, host, names.dns1123_subdomain)
    if not _HTTP_PATH_RE.fullmatch(path):
        found.append(causes.invalid(field, path,
                                    f"must be a valid path (regex used for validation is '{_HTTP_PATH_FMT}')"))
    return found


def _parameters(parameters: dict, where: str) -> list:
    """A missing scope is the default's "Cluster" (pkubectl checks manifests before the
    apiserver defaults them; upstream's "Required value" for it cannot be reached)."""
    found = _typed_reference(parameters, where)
    scope, namespace = parameters.get("scope") or "Cluster", parameters.get("namespace")
    if scope not in PARAMETER_SCOPES:
        return found + [causes.not_supported(f"{where}.scope", scope, PARAMETER_SCOPES)]
    if scope == "Namespace" and namespace is None:
        found.append(causes.required(f"{where}.namespace", "`parameters.scope` is set to 'Namespace'"))
    elif scope == "Namespace":
        found += syntax(f"{where}.namespace", namespace, names.dns1123_label)
    if scope == "Cluster" and namespace is not None:
        found.append(causes.forbidden(f"{where}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return found


def ingress_class_update(new: dict, old: dict) -> list:
    controller = as_dict(new.get("spec")).get("controller")
    if controller != as_dict(old.get("spec")).get("controller"):
        return [causes.invalid("spec.controller", controller, "field is immutable")]
    return []


# --- NetworkPolicy ------------------------------------------------------------------------------

def network_policy(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = _selector("spec.podSelector", spec.get("podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for _, rule, where in dict_items(spec.get(direction), f"spec.{direction}"):
            for _, port, at in dict_items(rule.get("ports"), f"{where}.ports"):
                found += _policy_port(port, at)
            for _, peer, at in dict_items(rule.get(peers), f"{where}.{peers}"):
                found += _peer(peer, at)
    types = spec.get("policyTypes") or []
    if len(types) > len(POLICY_TYPES):
        shown = "[]networking.PolicyType{" + ", ".join(json.dumps(t) for t in types) + "}"   # Go's %#v
        return found + [causes.make(causes.INVALID, "spec.policyTypes",
                                    f"Invalid value: {shown}: may not specify more than two policyTypes")]
    found += [causes.not_supported(f"spec.policyTypes[{i}]", t, POLICY_TYPES)
              for i, t in enumerate(types) if t not in POLICY_TYPES]
    return found


def _policy_port(port: dict, where: str) -> list:
    protocol, number, end = port.get("protocol"), port.get("port"), port.get("endPort")
    found = []
    if protocol is not None and protocol not in NETWORK_POLICY_PROTOCOLS:
        found.append(causes.not_supported(f"{where}.protocol", protocol, NETWORK_POLICY_PROTOCOLS))
    if is_int(number):
        found += in_range(f"{where}.port", number, 1, PORT_MAX)
        if is_int(end):
            if end < number:
                found.append(causes.invalid(f"{where}.endPort", number, "must be greater than or equal to `port`"))
            found += in_range(f"{where}.endPort", end, 1, PORT_MAX)
    elif isinstance(number, str):
        if end is not None:
            found.append(causes.invalid(f"{where}.endPort", end, "may not be specified when `port` is non-numeric"))
        found += iana_service_name(f"{where}.port", number)
    elif end is not None:
        found.append(causes.invalid(f"{where}.endPort", end, "may not be specified when `port` is not specified"))
    return found


def _peer(peer: dict, where: str) -> list:
    found = []
    for field in ("podSelector", "namespaceSelector"):
        found += _selector(f"{where}.{field}", peer.get(field))
    if peer.get("ipBlock") is not None:
        found += _ip_block(as_dict(peer["ipBlock"]), f"{where}.ipBlock")
    given = [f for f in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(f) is not None]
    if not given:
        found.append(causes.required(where, "must specify a peer"))
    elif len(given) > 1 and "ipBlock" in given:
        found.append(causes.forbidden(where, "may not specify both ipBlock and another peer"))
    return found


def _ip_block(block: dict, where: str) -> list:
    cidr = _network(block.get("cidr"))
    if not block.get("cidr"):
        return [causes.required(f"{where}.cidr")]
    if cidr is None:
        return [_invalid_cidr(f"{where}.cidr", block["cidr"])]
    found = []
    for index, text in enumerate(block.get("except") or []):
        at, excepted = f"{where}.except[{index}]", _network(text)
        if excepted is None:
            found.append(_invalid_cidr(at, text))
        elif excepted.version != cidr.version or not excepted.subnet_of(cidr) or excepted.prefixlen <= cidr.prefixlen:
            found.append(causes.invalid(at, text, "must be a strict subset of `cidr`"))
    return found


def _network(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except (TypeError, ValueError):
        return None


def _invalid_cidr(field: str, value) -> dict:
    return causes.invalid(field, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")


# --- defaults -----------------------------------------------------------------------------------

def default_network_policy(policy: dict) -> None:
    """policyTypes ["Ingress"], plus "Egress" when egress rules are given; ports' protocol TCP."""
    spec = policy.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for direction in ("ingress", "egress"):
        for _, rule, _ in dict_items(spec.get(direction), ""):
            for _, port, _ in dict_items(rule.get("ports"), ""):
                port.setdefault("protocol", "TCP")


def default_ingress_class(ingress_class_: dict) -> None:
    """A parameters reference without a scope is cluster-scoped."""
    parameters = as_dict(ingress_class_.get("spec")).get("parameters")
    if isinstance(parameters, dict):
        parameters.setdefault("scope", "Cluster")
