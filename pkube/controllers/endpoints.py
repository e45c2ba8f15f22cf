"""Endpoints controller: one Endpoints object per Service with a selector.

Per Service key, ``reconcile``:
- a deleted Service: its Endpoints are deleted;
- a Service without a selector (or of type ExternalName): nothing is touched
  (its Endpoints belong to the user);
- otherwise the pods of its namespace that the selector matches, that have an
  IP, are not terminal (Succeeded/Failed) and are not being deleted, become
  addresses: Ready pods under ``addresses``, the others under
  ``notReadyAddresses`` (all ready with ``publishNotReadyAddresses``). Each
  service port's ``targetPort`` is resolved per pod (a name looks up the
  container port of that name and protocol; a pod without it is left out of
  that port), and pods with the same resolved ports share one subset;
- the Endpoints object is written only when its subsets or labels changed.

The pure helpers (selection, readiness, per-pod ports, handlers mapping a pod
to its Services) are shared with the EndpointSlice controller.
"""

from __future__ import annotations

import copy
import logging
from typing import Optional

from pkube.client.errors import NotFound
from pkube.client.resources import ENDPOINTS, PODS, SERVICES
from pkube.client.store import index_by_namespace, object_key
from pkube.controllers.base import Controller, ControllerContext, split_key
from pkube.controllers.podcontrol import TERMINAL_PHASES, is_ready

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


# --------------------------------------------------------------------------- pure helpers

def service_selector(service: dict) -> Optional[dict]:
    """The Service's pod selector, or None when it has none (or is ExternalName)."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


def selects(service: dict, pod: dict) -> bool:
    """True when ``service`` (with a selector) selects ``pod`` of the same namespace."""
    selector = service_selector(service)
    if selector is None or _namespace(service) != _namespace(pod):
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _namespace(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


def pod_ip(pod: dict) -> Optional[str]:
    return (pod.get("status") or {}).get("podIP") or None


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def resolve_target_port(service_port: dict, pod: dict) -> Optional[int]:
    """The pod's port number for one service port; None when a named port is not in the pod."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def pod_ports(service: dict, pod: dict) -> tuple:
    """The service's ports resolved for ``pod``: a tuple of (name, port, protocol, appProtocol)."""
    resolved = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = resolve_target_port(sp, pod)
        if number is not None:
            resolved.append((sp.get("name") or "", number, sp.get("protocol") or "TCP",
                             sp.get("appProtocol")))
    return tuple(resolved)


def port_dicts(ports: tuple, always_name: bool = False) -> list[dict]:
    """The wire form of resolved ports, as Kubernetes writes them: an Endpoints port
    omits an empty name; an EndpointSlice port (``always_name``) always carries one,
    "" included (its name is a pointer there, and kubectl dereferences it)."""
    out = []
    for name, number, protocol, app_protocol in ports:
        port = {"port": number, "protocol": protocol}
        if name or always_name:
            port["name"] = name
        if app_protocol:
            port["appProtocol"] = app_protocol
        out.append(port)
    return out


def target_ref(pod: dict) -> dict:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"], "uid": meta.get("uid")}


def endpoint_address(pod: dict) -> dict:
    """One EndpointAddress: ip, nodeName, hostname (when the pod names one), targetRef."""
    spec = pod.get("spec") or {}
    address = {"ip": pod_ip(pod)}
    if spec.get("hostname"):
        address["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        address["nodeName"] = spec["nodeName"]
    address["targetRef"] = target_ref(pod)
    return address


def service_labels(service: dict) -> dict:
    """The labels Kubernetes puts on a Service's endpoints: the Service's own, plus headless."""
    labels = dict((service.get("metadata") or {}).get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def desired_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """The Endpoints subsets of ``service`` over the candidate ``pods`` (see the module docstring)."""
    publish_all = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[tuple, dict[str, list]] = {}
    for pod in pods:
        if not selects(service, pod) or not pod_ip(pod) or is_terminal(pod) or is_terminating(pod):
            continue
        ports = pod_ports(service, pod)
        if has_ports and not ports:
            continue
        group = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        which = "addresses" if publish_all or is_ready(pod) else "notReadyAddresses"
        group[which].append(endpoint_address(pod))
    return [_subset(ports, groups[ports]) for ports in sorted(groups, key=repr)]


def _subset(ports: tuple, group: dict) -> dict:
    subset = {}
    for which in ("addresses", "notReadyAddresses"):
        if group[which]:
            subset[which] = sorted(group[which], key=lambda a: (a["ip"], a["targetRef"]["name"]))
    if ports:
        subset["ports"] = port_dicts(ports)
    return subset


def desired_endpoints(service: dict, pods: list[dict], current: Optional[dict]) -> Optional[dict]:
    """The Endpoints to write for ``service``; None when ``current`` already says it."""
    subsets = desired_subsets(service, pods)
    labels = service_labels(service)
    if current is not None and (current.get("subsets") or []) == subsets and \
            ((current.get("metadata") or {}).get("labels") or {}) == labels:
        return None
    meta = service["metadata"]
    if current is None:
        return {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "labels": labels},
                "subsets": subsets}
    updated = copy.deepcopy(current)
    updated["metadata"]["labels"] = labels
    updated["subsets"] = subsets
    return updated


def endpoints_relevant(pod: dict) -> tuple:
    """What of a pod its endpoints depend on: an update that leaves it equal is ignored."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ports = [(c.get("name"), tuple((p.get("name"), p.get("containerPort"), p.get("protocol"))
                                   for p in c.get("ports") or []))
             for c in spec.get("containers") or []]
    return (meta.get("labels"), meta.get("deletionTimestamp"), status.get("podIP"),
            status.get("phase"), is_ready(pod), spec.get("nodeName"), spec.get("hostname"), ports)


class ServicePodIndex:
    """Informer handlers that map pod events to the keys of the Services selecting the pod.

    ``enqueue(service_key)`` is called for every Service of the pod's namespace
    that selected the pod before or selects it now.
    """

    def __init__(self, services, enqueue):
        self.services = services
        self.enqueue = enqueue

    def pod_added(self, pod: dict) -> None:
        self._enqueue_selecting(pod)

    def pod_updated(self, old: dict, new: dict) -> None:
        if endpoints_relevant(old) == endpoints_relevant(new):
            return
        keys = self._selecting(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            keys |= self._selecting(old)
        for key in keys:
            self.enqueue(key)

    def pod_deleted(self, pod: dict) -> None:
        self._enqueue_selecting(pod)

    def _enqueue_selecting(self, pod: dict) -> None:
        for key in self._selecting(pod):
            self.enqueue(key)

    def _selecting(self, pod: dict) -> set[str]:
        return {object_key(s) for s in self.services.store.by_index("namespace", _namespace(pod))
                if selects(s, pod)}


# --------------------------------------------------------------------------- the controller

class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, ctx: ControllerContext, workers: int = 4):
        super().__init__(ctx, workers)
        self.services = ctx.informers.informer(SERVICES, {"namespace": index_by_namespace})
        self.pods = ctx.informers.informer(PODS, {"namespace": index_by_namespace})
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.services.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        index = ServicePodIndex(self.services, self.queue.add)
        self.pods.add_handlers(index.pod_added, index.pod_updated, index.pod_deleted)
        self.endpoints.add_handlers(on_delete=self.enqueue)

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if service is None:                      # Kubernetes deletes the Endpoints of a deleted Service
            if current is not None:
                await self._delete(name, namespace)
            return
        if service_selector(service) is None:
            return
        pods = self.pods.store.by_index("namespace", namespace or "")
        wanted = desired_endpoints(service, pods, current)
        if wanted is None:
            return
        if current is None:
            await self.client.create(ENDPOINTS, wanted, namespace)   # AlreadyExists: cache behind, retried
        else:
            await self.client.replace(ENDPOINTS, wanted, namespace)

    async def _delete(self, name: str, namespace: Optional[str]) -> None:
        try:
            await self.client.delete(ENDPOINTS, name, namespace)
        except NotFound:
            pass


def new_controller(ctx: ControllerContext) -> EndpointsController:
    return EndpointsController(ctx)
