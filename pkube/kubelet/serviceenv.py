"""Kubernetes' service environment variables (kubelet envvars.FromServices).

For every Service with a cluster IP in the pod's namespace (when ``enableServiceLinks`` is
not false) and, always, the ``kubernetes`` Service of the default namespace, a container
gets ``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT`` (the first port),
``<NAME>_SERVICE_PORT_<PORTNAME>`` per named port, and Docker's link variables
``<NAME>_PORT``, ``<NAME>_PORT_<port>_<PROTO>`` with ``_PROTO``, ``_PORT`` and ``_ADDR``.
Names are upper-cased with ``-`` turned into ``_``.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from pkube.client.informer import Informer
from pkube.client.resources import SERVICES

MASTER_NAMESPACE = "default"
MASTER_SERVICES = ("kubernetes",)
FIRST_SYNC_WAIT_SECONDS = 5.0
STATIC_SOURCE_KEY = "kubernetes.io/config.source"


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def has_cluster_ip(service: dict) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def visible_services(services: Iterable[dict], namespace: str, enable_links: bool) -> list[dict]:
    """The Services whose variables a pod in ``namespace`` gets, one per name."""
    chosen: dict[str, dict] = {}
    for service in services:
        if not has_cluster_ip(service):
            continue
        meta = service.get("metadata") or {}
        name, service_ns = meta.get("name", ""), meta.get("namespace", "")
        if service_ns == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif service_ns == namespace and enable_links:
            chosen[name] = service
    return [chosen[name] for name in sorted(chosen)]


def service_variables(service: dict) -> dict[str, str]:
    """The variables of one Service with a cluster IP and at least one port."""
    spec = service["spec"]
    ports = spec.get("ports") or []
    if not ports:
        return {}
    prefix, ip = env_name(service["metadata"]["name"]), spec["clusterIP"]
    found = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        if port.get("name"):
            found[f"{prefix}_SERVICE_PORT_{env_name(port['name'])}"] = str(port["port"])
    for index, port in enumerate(ports):
        protocol = (port.get("protocol") or "TCP").lower()
        address = f"{protocol}://{_join_host_port(ip, port['port'])}"
        if index == 0:
            found[f"{prefix}_PORT"] = address
        port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        found.update({port_prefix: address, f"{port_prefix}_PROTO": protocol,
                      f"{port_prefix}_PORT": str(port["port"]), f"{port_prefix}_ADDR": ip})
    return found


def _join_host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pod_service_env(services: Iterable[dict], pod: dict) -> dict[str, str]:
    """Every service variable a container of ``pod`` gets (before its own env)."""
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    enable_links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    env: dict[str, str] = {}
    for service in visible_services(services, namespace, enable_links):
        env.update(service_variables(service))
    return env


class ServiceEnv:
    """The kubelet's view of the Services (a watch of all of them, as the kubelet keeps).
    ``env_for(pod)`` of a pod from the API waits up to a few seconds for the first list, so
    that a pod started right after the kubelet still sees its Services; a static pod does
    not wait (the control plane's own pods start before there is an apiserver to list)."""

    def __init__(self, client):
        self.informer = Informer(client, SERVICES)

    async def run(self) -> None:
        await self.informer.run()

    async def env_for(self, pod: dict) -> dict[str, str]:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if not self.informer.has_synced() and annotations.get(STATIC_SOURCE_KEY) != "file":
            try:
                await asyncio.wait_for(self.informer.wait_synced(), FIRST_SYNC_WAIT_SECONDS)
            except asyncio.TimeoutError:
                pass
        return pod_service_env(self.informer.store.list(), pod)
