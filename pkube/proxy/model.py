"""What the proxy programs, read from the API: Service ports and their endpoints.

Pure functions over Service and EndpointSlice dicts (discovery.k8s.io/v1), as kube-proxy's
ServicePort and Endpoint infos: no client, no nft. A Service that cannot be programmed raises
ValueError with the reason; the caller logs it with the Service's name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_AFFINITY_TIMEOUT = 10800     # seconds, as the API's sessionAffinityConfig default


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, as the proxy sees it. `node_port` 0: none; `affinity_timeout`
    0: no session affinity; `external_local`: externalTrafficPolicy Local."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_timeout: int = 0
    external_local: bool = False

    @property
    def id(self) -> str:
        """Unique and valid in nft names: namespace/name/protocol/port-name (names hold no "/")."""
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port_name or self.port}/{self.protocol}"


@dataclass(frozen=True)
class Endpoint:
    """One address of an EndpointSlice with the port resolved for one ServicePort."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    local: bool = False          # on this node (endpoint nodeName == the proxy's node)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Flow:
    """Datagrams sent to `front_ip`:`front_port` (front_ip "": any local address, a NodePort)
    DNATed to `endpoint_ip`:`endpoint_port` over `protocol` (udp, sctp): what conntrack keeps
    for a connectionless Service, to be deleted when the endpoint goes."""

    protocol: str
    front_ip: str
    front_port: int
    endpoint_ip: str
    endpoint_port: int


def service_key(service: dict) -> str:
    meta = service.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def slice_service_key(slice_: dict) -> str | None:
    """namespace/service of an EndpointSlice (its kubernetes.io/service-name label); None if unlabelled."""
    meta = slice_.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace') or 'default'}/{name}" if name else None


def service_ports(service: dict) -> list[ServicePort]:
    """The ports the proxy programs for `service`: [] for headless and ExternalName Services
    and Services without a ClusterIP. Raises ValueError for what cannot be programmed."""
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or cluster_ip in ("", "None"):
        return []
    try:
        if ipaddress.ip_address(cluster_ip).version != 4:
            return []                                  # IPv4 only: an IPv6 family is not ours
    except ValueError:
        raise ValueError(f"bad clusterIP {cluster_ip!r}") from None
    meta = service.get("metadata") or {}
    affinity = _affinity_timeout(spec)
    local = spec.get("externalTrafficPolicy") == "Local"
    ports = []
    for p in spec.get("ports") or []:
        protocol = (p.get("protocol") or "TCP").lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"port {p.get('name') or p.get('port')}: protocol {p.get('protocol')!r} is not TCP, UDP or SCTP")
        ports.append(ServicePort(meta.get("namespace") or "default", meta.get("name"), p.get("name") or "",
                                 protocol, cluster_ip, _port(p.get("port"), "port"),
                                 _port(p.get("nodePort") or 0, "nodePort", allow_zero=True), affinity, local))
    return ports


def _affinity_timeout(spec: dict) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    timeout = config.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT
    if not isinstance(timeout, int) or not 1 <= timeout <= 86400:
        raise ValueError(f"sessionAffinityConfig.clientIP.timeoutSeconds {timeout!r}: want 1-86400")
    return timeout


def _port(value, what: str, allow_zero: bool = False) -> int:
    if not isinstance(value, int) or not (0 if allow_zero else 1) <= value <= 65535:
        raise ValueError(f"bad {what} {value!r}")
    return value


def port_endpoints(sp: ServicePort, slices: list[dict], node_name: str) -> list[Endpoint]:
    """The endpoints of `sp` in its Service's IPv4 `slices` (the slice's port of the same name
    and protocol gives the target port, named targetPorts included), one per address, sorted."""
    found: dict[str, Endpoint] = {}
    for s in slices:
        if (s.get("addressType") or "IPv4") != "IPv4":
            continue
        port = next((p.get("port") for p in s.get("ports") or []
                     if (p.get("name") or "") == sp.port_name
                     and (p.get("protocol") or "TCP").lower() == sp.protocol), None)
        if not isinstance(port, int):
            continue
        for e in s.get("endpoints") or []:
            for ip in (e.get("addresses") or [])[:1]:
                found.setdefault(ip, _endpoint(e, ip, port, node_name))
    return [found[ip] for ip in sorted(found, key=ipaddress.IPv4Address)]


def _endpoint(e: dict, ip: str, port: int, node_name: str) -> Endpoint:
    ipaddress.IPv4Address(ip)          # a bad address raises ValueError
    conditions = e.get("conditions") or {}
    ready = conditions.get("ready") is not False            # unset means ready (the API's rule)
    serving = conditions.get("serving", ready) is not False
    return Endpoint(ip, port, ready, serving, bool(conditions.get("terminating")),
                    bool(node_name) and e.get("nodeName") == node_name)


def usable(endpoints: list[Endpoint]) -> list[Endpoint]:
    """The endpoints traffic goes to: the ready ones; when there are none, those still
    serving while terminating (kube-proxy's fallback, so a rollout never drops a Service)."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving and e.terminating]
