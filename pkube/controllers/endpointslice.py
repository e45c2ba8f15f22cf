"""EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for Services with a selector.

Per Service key, ``reconcile``:
- the selected pods that have an IP and are not terminal become endpoints
  (one address each) with ``conditions.ready`` (pod Ready and not
  terminating), ``serving`` (pod Ready) and ``terminating`` (being deleted);
  ``publishNotReadyAddresses`` makes every such endpoint ready and serving;
- endpoints whose resolved ports are the same share slices of at most
  ``max_endpoints`` (100); an endpoint stays in the slice that has it, new
  ones fill free room first, so a change rewrites few slices;
- slices carry ``kubernetes.io/service-name``, the managed-by label
  ``endpointslice-controller.k8s.io``, the Service's labels, addressType
  IPv4, and a controller ownerReference to the Service;
- a selector-using Service with no endpoints keeps one empty placeholder slice;
- only changed slices are written; slices of a deleted Service, or of a port
  set no longer used, are deleted. Services without a selector are untouched,
  and slices of other managers are never touched.

Creates and deletes the cache has not shown yet are tracked (``SliceTracker``),
so a reconcile on a stale cache waits instead of creating duplicates.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Optional

from pkube.client.errors import NotFound
from pkube.client.resources import ENDPOINTSLICES, PODS, SERVICES
from pkube.client.store import index_by_namespace
from pkube.controllers.base import Controller, ControllerContext, split_key
from pkube.controllers.endpoints import (ServicePodIndex, is_terminal, is_terminating,
                                   pod_ip, pod_ports, port_dicts, selects, service_labels,
                                   service_selector, target_ref)
from pkube.controllers.podcontrol import is_ready, owner_reference

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS = 100
TRACKER_TIMEOUT = 10.0


# --------------------------------------------------------------------------- pure helpers

def slice_endpoint(service: dict, pod: dict) -> dict:
    """One EndpointSlice endpoint for ``pod``."""
    publish_all = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    terminating = is_terminating(pod)
    serving = publish_all or is_ready(pod)
    endpoint = {"addresses": [pod_ip(pod)],
                "conditions": {"ready": serving and (publish_all or not terminating),
                               "serving": serving, "terminating": terminating}}
    spec = pod.get("spec") or {}
    if spec.get("hostname"):
        endpoint["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    endpoint["targetRef"] = target_ref(pod)
    return endpoint


def endpoint_groups(service: dict, pods: list[dict]) -> dict[tuple, list[dict]]:
    """Resolved ports -> the endpoints with those ports (sorted by address)."""
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[tuple, list[dict]] = {}
    for pod in pods:
        if not selects(service, pod) or not pod_ip(pod) or is_terminal(pod):
            continue
        ports = pod_ports(service, pod)
        if has_ports and not ports:
            continue
        groups.setdefault(ports, []).append(slice_endpoint(service, pod))
    for endpoints in groups.values():
        endpoints.sort(key=_address)
    return groups


def _address(endpoint: dict) -> str:
    return (endpoint.get("addresses") or [""])[0]


def slice_ports(slice_: dict) -> tuple:
    """A slice's ports in the resolved-port tuple form of ``pod_ports``."""
    return tuple(sorted(((p.get("name") or "", p.get("port"), p.get("protocol") or "TCP",
                          p.get("appProtocol")) for p in slice_.get("ports") or []), key=repr))


def slice_labels(service: dict) -> dict:
    meta = service["metadata"]
    labels = {k: v for k, v in service_labels(service).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels.update({SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: CONTROLLER_NAME})
    return labels


def service_owner(service: dict) -> dict:
    return owner_reference({**service, "apiVersion": "v1", "kind": "Service"})


def new_slice(service: dict, ports: tuple, endpoints: list[dict]) -> dict:
    meta = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta.get("namespace"),
                         "labels": slice_labels(service), "ownerReferences": [service_owner(service)]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": port_dicts(ports, always_name=True)}


@dataclass
class SlicePlan:
    """The writes that bring a Service's slices to the desired state."""

    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_slices(service: dict, pods: list[dict], existing: list[dict],
                max_endpoints: int = MAX_ENDPOINTS) -> SlicePlan:
    """Pure: the creates, updates and deletes turning ``existing`` (this controller's slices
    of ``service``) into the slices of its selected ``pods``."""
    plan = SlicePlan()
    groups = endpoint_groups(service, pods)
    by_ports: dict[tuple, list[dict]] = {}
    for s in sorted(existing, key=lambda s: s["metadata"]["name"]):
        by_ports.setdefault(slice_ports(s), []).append(s)
    if not groups:
        groups = {(): []}                                    # the placeholder: one empty slice
    for ports, endpoints in groups.items():
        _plan_group(service, ports, endpoints, by_ports.pop(tuple(sorted(ports, key=repr)), []),
                    max_endpoints, plan)
    plan.delete += [s["metadata"]["name"] for slices in by_ports.values() for s in slices]
    return plan


def _plan_group(service: dict, ports: tuple, endpoints: list[dict], slices: list[dict],
                max_endpoints: int, plan: SlicePlan) -> None:
    wanted = {_address(e): e for e in endpoints}
    contents, placed = [], set()
    for s in slices:
        keep = [wanted[a] for a in map(_address, s.get("endpoints") or []) if a in wanted and a not in placed]
        placed.update(map(_address, keep))
        contents.append(keep)
    remaining = [e for e in endpoints if _address(e) not in placed]
    for keep in contents:
        room = max_endpoints - len(keep)
        keep += remaining[:room]
        remaining = remaining[room:]
    for s, keep in zip(slices, contents):
        if not keep and (endpoints or s is not slices[0]):
            plan.delete.append(s["metadata"]["name"])
            continue
        _plan_update(service, s, ports, sorted(keep, key=_address), plan)
    for start in range(0, len(remaining), max_endpoints):
        plan.create.append(new_slice(service, ports, remaining[start:start + max_endpoints]))
    if not slices and not endpoints:
        plan.create.append(new_slice(service, ports, []))


def _plan_update(service: dict, current: dict, ports: tuple, endpoints: list[dict],
                 plan: SlicePlan) -> None:
    labels, owners = slice_labels(service), [service_owner(service)]
    meta = current["metadata"]
    if (current.get("endpoints") or []) == endpoints and meta.get("labels") == labels and \
            (current.get("ports") or []) == port_dicts(ports, always_name=True) and meta.get("ownerReferences") == owners:
        return
    updated = copy.deepcopy(current)
    updated["metadata"].update(labels=labels, ownerReferences=owners)
    updated.update(endpoints=endpoints, ports=port_dicts(ports, always_name=True))
    plan.update.append(updated)


def slice_service_key(slice_: dict) -> Optional[str]:
    """``namespace/service`` of a slice this controller manages; None for other slices."""
    labels = (slice_.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME or not labels.get(SERVICE_NAME_LABEL):
        return None
    return f"{slice_['metadata'].get('namespace')}/{labels[SERVICE_NAME_LABEL]}"


def index_slices_by_service(slice_: dict) -> list[str]:
    key = slice_service_key(slice_)
    return [key] if key else []


class SliceTracker:
    """Slices created or deleted by this controller that the cache has not shown yet.

    ``stale(key, cached_names)`` is True while a create is not in the cache or a
    delete still is, for at most ``timeout`` seconds after the write.
    """

    def __init__(self, clock, timeout: float = TRACKER_TIMEOUT):
        self.clock, self.timeout = clock, timeout
        self._pending: dict[str, tuple[set, set, float]] = {}

    def wrote(self, key: str, created: list[str], deleted: list[str]) -> None:
        if created or deleted:
            self._pending[key] = (set(created), set(deleted), self.clock.now())

    def stale(self, key: str, cached_names: set[str]) -> bool:
        pending = self._pending.get(key)
        if pending is None:
            return False
        created, deleted, at = pending
        if (created <= cached_names and not deleted & cached_names) or \
                self.clock.now() - at > self.timeout:
            del self._pending[key]
            return False
        return True

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


# --------------------------------------------------------------------------- the controller

class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, ctx: ControllerContext, workers: int = 4, max_endpoints: int = MAX_ENDPOINTS):
        super().__init__(ctx, workers)
        self.max_endpoints = max_endpoints
        self.tracker = SliceTracker(ctx.clock)
        self.services = ctx.informers.informer(SERVICES, {"namespace": index_by_namespace})
        self.pods = ctx.informers.informer(PODS, {"namespace": index_by_namespace})
        self.slices = ctx.informers.informer(ENDPOINTSLICES, {"service": index_slices_by_service})
        self.services.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        index = ServicePodIndex(self.services, self.queue.add)
        self.pods.add_handlers(index.pod_added, index.pod_updated, index.pod_deleted)
        self.slices.add_handlers(self._slice_changed, lambda old, new: self._slice_changed(new),
                                 self._slice_changed)

    def _slice_changed(self, slice_: dict) -> None:
        key = slice_service_key(slice_)
        if key is not None:
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        namespace, _ = split_key(key)
        existing = self.slices.store.by_index("service", key)
        if self.tracker.stale(key, {s["metadata"]["name"] for s in existing}):
            self.queue.add_after(key, self.tracker.timeout)   # the cache event re-queues it sooner
            return
        service = self.services.store.get(key)
        if service is None or service_selector(service) is None:
            if service is None:
                await self._delete_all(key, namespace, [s["metadata"]["name"] for s in existing])
            return
        pods = self.pods.store.by_index("namespace", namespace or "")
        plan = plan_slices(service, pods, existing, self.max_endpoints)
        if not plan.empty():
            await self._apply(key, namespace, plan)

    async def _apply(self, key: str, namespace: Optional[str], plan: SlicePlan) -> None:
        created, deleted = [], []
        try:
            for body in plan.create:
                created.append((await self.client.create(ENDPOINTSLICES, body, namespace))["metadata"]["name"])
            for body in plan.update:
                await self.client.replace(ENDPOINTSLICES, body, namespace)
            for name in plan.delete:
                await self._delete(name, namespace)
                deleted.append(name)
        finally:
            self.tracker.wrote(key, created, deleted)

    async def _delete_all(self, key: str, namespace: Optional[str], names: list[str]) -> None:
        for name in names:
            await self._delete(name, namespace)
        self.tracker.wrote(key, [], names)

    async def _delete(self, name: str, namespace: Optional[str]) -> None:
        try:
            await self.client.delete(ENDPOINTSLICES, name, namespace)
        except NotFound:
            pass


def new_controller(ctx: ControllerContext) -> EndpointSliceController:
    return EndpointSliceController(ctx)

