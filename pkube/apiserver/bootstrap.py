"""The ``kubernetes`` Service: where pods find the apiserver.

As Kubernetes' own apiserver does at start-up, ``KubernetesService.ensure``
makes ``default/kubernetes`` exist: a ClusterIP Service on the first address
of the service range, port 443 to the apiserver's port, with an Endpoints and
an EndpointSlice naming the advertised address. A moved apiserver (another
address or port) updates the endpoints; a ``kubernetes`` Service made by
someone else, or a first address already taken, is left alone and logged.
With several apiservers, ``publish`` puts every live one in the endpoints
(pkube/apiserver/endpointleases.py decides which are live).
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from pkube.api.kinds import Registry
from pkube.apiserver import errors
from pkube.apiserver.paths import Target
from pkube.apiserver.resources import ResourceStore, WriteOptions

log = logging.getLogger(__name__)

NAME, NAMESPACE = "kubernetes", "default"
SERVICE_PORT = 443
PROBE_ADDRESS = ("192.0.2.1", 9)  # TEST-NET-1: a UDP connect picks the route, sends nothing


def default_advertise_address(bind_address: str) -> str:
    """The bind address, or for a wildcard one the address of the default route
    (127.0.0.1 when there is none)."""
    if bind_address not in ("0.0.0.0", "::", ""):
        return bind_address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(PROBE_ADDRESS)
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class KubernetesService:
    """Keeps default/kubernetes pointing at ``address``:``port`` (and at the other
    live apiservers' addresses once ``publish`` names them)."""

    def __init__(self, store: ResourceStore, registry: Registry, service_cidr: str,
                 address: str, port: int, scheme: str = "https"):
        self.store = store
        self.infos = {kind: registry.by_kind(kind, group) for kind, group in
                      (("Service", ""), ("Endpoints", ""), ("EndpointSlice", "discovery.k8s.io"))}
        self.cluster_ip = str(ipaddress.ip_network(service_cidr, strict=False)[1])
        self.address, self.port, self.port_name = address, port, scheme
        self.addresses = [address]

    async def ensure(self) -> None:
        """Create or correct the Service and its endpoints; never raises (logs)."""
        try:
            if await self._ensure_service():
                await self._ensure_endpoints()
        except Exception:  # noqa: BLE001 - the apiserver serves without it
            log.exception("could not make the %s/%s Service", NAMESPACE, NAME)

    async def publish(self, addresses: list[str]) -> None:
        """Point the endpoints at ``addresses`` (every live apiserver, this one included;
        sorted, so that every apiserver writes the same object). Written only when the
        Service is ours and something changed; never raises (logs)."""
        self.addresses = sorted(set(addresses) | {self.address}, key=ipaddress.ip_address)
        try:
            if await self._current_is_ours():
                await self._ensure_endpoints()
        except Exception:  # noqa: BLE001 - the apiserver serves without it
            log.exception("could not update the %s/%s endpoints", NAMESPACE, NAME)

    async def _ensure_endpoints(self) -> None:
        await self._ensure("Endpoints", self.endpoints())
        await self._ensure("EndpointSlice", self.endpoint_slice())

    async def _current_is_ours(self) -> bool:
        current = await self._current("Service")
        return current is not None and (current["metadata"].get("labels") or {}).get("provider") == "kubernetes"

    async def _ensure_service(self) -> bool:
        """True when the Service is ours to keep (created now, or found with our labels)."""
        current = await self._current("Service")
        if current is None:
            try:
                await self.store.create(self._target("Service", None), self.service(), WriteOptions())
                return True
            except errors.ApiError as exc:
                if exc.reason != "AlreadyExists":
                    log.warning("no %s/%s Service: %s", NAMESPACE, NAME, exc)
                    return False
            current = await self._current("Service")
        ours = current is not None and (current["metadata"].get("labels") or {}).get("provider") == "kubernetes"
        if not ours:
            log.warning("a %s/%s Service made by someone else exists: left alone", NAMESPACE, NAME)
        return ours

    async def _current(self, kind: str):
        try:
            return await self.store.get(self._target(kind, NAME))
        except errors.ApiError as exc:
            if exc.reason == "NotFound":
                return None
            raise

    async def _ensure(self, kind: str, desired: dict) -> None:
        try:
            await self.store.create(self._target(kind, None), desired, WriteOptions())
            return
        except errors.ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
        body = {key: value for key, value in desired.items() if key != "metadata"}
        await self.store.write(self._target(kind, NAME), lambda current: {**current, **body}, WriteOptions())

    def _target(self, kind: str, name) -> Target:
        return Target(self.infos[kind], NAMESPACE, name)

    def service(self) -> dict:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": self.cluster_ip, "sessionAffinity": "None",
                         "ports": [{"name": self.port_name, "port": SERVICE_PORT, "protocol": "TCP",
                                    "targetPort": self.port}]}}

    def endpoints(self) -> dict:
        return {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": address} for address in self.addresses],
                             "ports": [{"name": self.port_name, "port": self.port, "protocol": "TCP"}]}]}

    def endpoint_slice(self) -> dict:
        family = "IPv6" if ipaddress.ip_address(self.address).version == 6 else "IPv4"
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": NAME}},
                "addressType": family,
                "endpoints": [{"addresses": [address], "conditions": {"ready": True}} for address in self.addresses],
                "ports": [{"name": self.port_name, "port": self.port, "protocol": "TCP"}]}
