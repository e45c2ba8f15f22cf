"""The cluster's DNS names, answered from the proxy's Services and EndpointSlices.

Kubernetes' DNS specification (what CoreDNS's kubernetes plugin serves), for the cluster
domain ``cluster.local``:

- ``<svc>.<ns>.svc.cluster.local``: A the Service's cluster IP; for a headless Service, the
  address of each ready endpoint (every endpoint with ``publishNotReadyAddresses``); CNAME
  the ``externalName`` of an ExternalName Service.
- ``<hostname>.<svc>.<ns>.svc.cluster.local``: A of the headless Service's endpoint with that
  hostname (a StatefulSet's pods) or that dashed address (``10-244-0-5``).
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local``: SRV for a named port: the Service's name
  (its cluster IP in the additional section), or each endpoint of a headless Service.
- ``<a-b-c-d>.<ns>.pod.cluster.local``: A a.b.c.d (CoreDNS's ``pods insecure``, the default).
- A name in the cluster domain that does not exist is NXDOMAIN; one that exists but has no
  record of the asked type (AAAA: the cluster is IPv4) is an empty NOERROR; both carry the
  zone's SOA, so resolvers cache the absence for the SOA's minimum (5 s).
- Anything outside the cluster domain is not ours (``resolve`` returns None): the server
  forwards it to the host's resolvers.

Pure functions of the objects handed in (no sockets): ``ClusterNames(domain, get_service,
slices_of)`` with the proxy's informer stores as the lookups.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from dnslib import CNAME, QTYPE, RCODE, RR, SOA, SRV, A

TTL = 5
NEGATIVE_TTL = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass
class Answer:
    """What the cluster DNS says of one question: a response code, the answer records and
    the additional ones; ``authority`` holds the SOA of a negative answer."""

    rcode: int = RCODE.NOERROR
    answers: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    authority: list = field(default_factory=list)


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    hostname: str
    ports: dict          # port name -> (port, protocol)


class ClusterNames:
    """Answers questions about the cluster domain. ``get_service("ns/name")`` returns the
    Service (or None); ``slices_of("ns/name")`` its EndpointSlices."""

    def __init__(self, domain: str, get_service: Callable[[str], Optional[dict]],
                 slices_of: Callable[[str], Iterable[dict]]):
        self.domain = domain.strip(".").lower()
        self.get_service = get_service
        self.slices_of = slices_of

    # ---- the entry point

    def resolve(self, qname: str, qtype: int) -> Optional[Answer]:
        """The answer to (qname, qtype), or None when the name is outside the cluster domain."""
        name = qname.rstrip(".").lower()
        if name != self.domain and not name.endswith("." + self.domain):
            return None
        labels = name[:-len(self.domain)].rstrip(".").split(".") if name != self.domain else []
        records = self._records(labels, qname)
        if records is None:
            return self._negative(RCODE.NXDOMAIN)
        if qtype == QTYPE.SOA and not labels:
            return Answer(answers=[self._soa()])
        wanted = [rr for rr in records.answers if qtype in (QTYPE.ANY, rr.rtype) or rr.rtype == QTYPE.CNAME]
        if not wanted:
            return self._negative(RCODE.NOERROR)
        additional = records.additional if qtype in (QTYPE.SRV, QTYPE.ANY) else []
        return Answer(answers=wanted, additional=additional)

    # ---- names

    def _records(self, labels: list[str], qname: str) -> Optional[Answer]:
        """Every record ``qname`` has (Answer with them), or None when it does not exist."""
        if labels in ([], ["svc"], ["pod"]):
            return Answer()
        if labels[-1] == "pod" and len(labels) == 3:
            return self._pod(labels[0], qname)
        if labels[-1] != "svc" or len(labels) < 3:
            return None
        namespace, service_name, rest = labels[-2], labels[-3], labels[:-3]
        service = self.get_service(f"{namespace}/{service_name}")
        if service is None:
            return None
        if not rest:
            return self._service(service, qname)
        if len(rest) == 1:
            return self._endpoint_host(service, rest[0], qname)
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._srv(service, rest[0][1:], rest[1][1:], qname)
        return None

    def _pod(self, dashed: str, qname: str) -> Optional[Answer]:
        try:
            ip = ipaddress.IPv4Address(dashed.replace("-", "."))
        except ValueError:
            return None
        return Answer(answers=[RR(qname, QTYPE.A, rdata=A(str(ip)), ttl=TTL)])

    def _service(self, service: dict, qname: str) -> Answer:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            target = spec.get("externalName", "")
            return Answer(answers=[RR(qname, QTYPE.CNAME, rdata=CNAME(target), ttl=TTL)] if target else [])
        return Answer(answers=[RR(qname, QTYPE.A, rdata=A(ip), ttl=TTL) for ip in self._addresses(service)])

    def _endpoint_host(self, service: dict, host: str, qname: str) -> Optional[Answer]:
        if not _is_headless(service):
            return None
        for endpoint in self._endpoints(service):
            if host in (endpoint.hostname, _dashed(endpoint.ip)):
                return Answer(answers=[RR(qname, QTYPE.A, rdata=A(endpoint.ip), ttl=TTL)])
        return None

    def _srv(self, service: dict, port_name: str, protocol: str, qname: str) -> Optional[Answer]:
        base = qname.split(".", 2)[2]           # <svc>.<ns>.svc.<domain>
        if not _is_headless(service):
            port = next((p for p in (service.get("spec") or {}).get("ports") or []
                         if p.get("name") == port_name and (p.get("protocol") or "TCP").lower() == protocol), None)
            if port is None:
                return None
            return Answer(answers=[RR(qname, QTYPE.SRV, rdata=SRV(0, 100, port["port"], base), ttl=TTL)],
                          additional=[RR(base, QTYPE.A, rdata=A(ip), ttl=TTL) for ip in self._addresses(service)])
        matching = [(e, e.ports[port_name][0]) for e in self._endpoints(service)
                    if port_name in e.ports and e.ports[port_name][1] == protocol]
        if not matching:
            return None
        weight = max(1, 100 // len(matching))
        answer = Answer()
        for endpoint, port in matching:
            target = f"{endpoint.hostname or _dashed(endpoint.ip)}.{base}"
            answer.answers.append(RR(qname, QTYPE.SRV, rdata=SRV(0, weight, port, target), ttl=TTL))
            answer.additional.append(RR(target, QTYPE.A, rdata=A(endpoint.ip), ttl=TTL))
        return answer

    # ---- objects

    def _addresses(self, service: dict) -> list[str]:
        if _is_headless(service):
            return sorted({e.ip for e in self._endpoints(service)}, key=ipaddress.IPv4Address)
        ip = (service.get("spec") or {}).get("clusterIP")
        return [ip] if ip else []

    def _endpoints(self, service: dict) -> list[_Endpoint]:
        """The endpoints DNS publishes: ready ones (all with publishNotReadyAddresses)."""
        meta, spec = service["metadata"], service.get("spec") or {}
        every = bool(spec.get("publishNotReadyAddresses"))
        found = []
        for slice_ in self.slices_of(f"{meta['namespace']}/{meta['name']}"):
            if slice_.get("addressType", "IPv4") != "IPv4":
                continue
            ports = {p.get("name") or "": (p.get("port"), (p.get("protocol") or "TCP").lower())
                     for p in slice_.get("ports") or []}
            for endpoint in slice_.get("endpoints") or []:
                if not every and (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in endpoint.get("addresses") or []:
                    found.append(_Endpoint(ip, endpoint.get("hostname") or "", ports))
        return found

    # ---- negative answers

    def _soa(self) -> RR:
        return RR(self.domain, QTYPE.SOA, ttl=NEGATIVE_TTL,
                  rdata=SOA(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}",
                            (1, 7200, 1800, 86400, NEGATIVE_TTL)))

    def _negative(self, rcode: int) -> Answer:
        return Answer(rcode=rcode, authority=[self._soa()])


def _is_headless(service: dict) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")

