"""Table columns of Ingresses, IngressClasses and NetworkPolicies, as kubectl prints them
(Kubernetes' printers.go: at most three hosts then "+ N more...", ports "80" or "80, 443" with
TLS, the load balancer's addresses sorted; the apiserver prints wide, so none is cut).
Imported at the end of ``apiserver.tables``; registers itself in its ``PRINTERS``."""

from __future__ import annotations

import datetime

from pkube.apiserver import tables
from pkube.apiserver.tables import AGE, NAME, NONE, Column, _meta, age_since, format_label_selector

SHOWN_HOSTS = 3

INGRESS_COLUMNS = (
    NAME,
    Column("Class", description="The name of the IngressClass resource that should be used for ingress with "
                                "this Ingress"),
    Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule"),
    Column("Address", description="Address is a list containing ingress points for the load-balancer"),
    Column("Ports", description="Ports of TLS configurations that open"),
    AGE,
)

INGRESSCLASS_COLUMNS = (
    NAME,
    Column("Controller", description="Controller that is responsible for handling this class"),
    Column("Parameters", description="A reference to a resource with additional parameters"),
    AGE,
)

NETWORKPOLICY_COLUMNS = (
    NAME,
    Column("Pod-Selector", description="Selects the pods to which this NetworkPolicy object applies. The array "
                                       "of ingress rules is applied to any pods selected by this field. Multiple "
                                       "network policies can select the same set of pods. In this case, the "
                                       "ingress rules for each are combined additively. This field is NOT "
                                       "optional and follows standard label selector semantics. An empty "
                                       "podSelector matches all pods in this namespace."),
    AGE,
)


def ingress_hosts(rules: list) -> str:
    """printers.go formatHosts: the first three hosts, "*" when no rule names one."""
    shown, more = [], False
    for rule in rules:
        if len(shown) == SHOWN_HOSTS:
            more = True
        if not more and (rule or {}).get("host"):
            shown.append(rule["host"])
    if not shown:
        return "*"
    return ",".join(shown) + (f" + {len(rules) - SHOWN_HOSTS} more..." if more else "")


def ingress_address(obj: dict) -> str:
    """Each load balancer ingress point's IP, else its hostname, sorted and without repeats."""
    points = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ",".join(sorted({p.get("ip") or p.get("hostname") for p in points if p.get("ip") or p.get("hostname")}))


def _ingress_cells(obj: dict, now: datetime.datetime) -> list:
    spec = obj.get("spec") or {}
    return [_meta(obj).get("name", ""), spec.get("ingressClassName") or NONE, ingress_hosts(spec.get("rules") or []),
            ingress_address(obj), "80, 443" if spec.get("tls") else "80",
            age_since(_meta(obj).get("creationTimestamp"), now)]


def _ingressclass_cells(obj: dict, now: datetime.datetime) -> list:
    spec = obj.get("spec") or {}
    parameters = spec.get("parameters")
    shown = NONE
    if parameters:
        group = parameters.get("apiGroup")
        kind = parameters.get("kind", "") + (f".{group}" if group is not None else "")
        shown = f"{kind}/{parameters.get('name', '')}"
    return [_meta(obj).get("name", ""), spec.get("controller", ""), shown,
            age_since(_meta(obj).get("creationTimestamp"), now)]


def _networkpolicy_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), format_label_selector((obj.get("spec") or {}).get("podSelector")),
            age_since(_meta(obj).get("creationTimestamp"), now)]


tables.PRINTERS["ingresses"] = (INGRESS_COLUMNS, _ingress_cells)
tables.PRINTERS["ingressclasses"] = (INGRESSCLASS_COLUMNS, _ingressclass_cells)
tables.PRINTERS["networkpolicies"] = (NETWORKPOLICY_COLUMNS, _networkpolicy_cells)
