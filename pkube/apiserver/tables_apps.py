"""Table columns of DaemonSets, StatefulSets and ControllerRevisions, as kubectl prints them
(Kubernetes' printers.go). Imported at the end of ``apiserver.tables``; registers itself in
its ``PRINTERS`` (importing this module first works too)."""

from __future__ import annotations

import datetime

from pkube.apiserver import tables
from pkube.apiserver.tables import (AGE, CONTAINERS, IMAGES, NAME, SELECTOR, Column, _get, _meta, _names_and_images,
                              _template_containers, age_since, format_label_selector)

DAEMONSET_COLUMNS = (
    NAME,
    Column("Desired", type="integer", description="The desired number of nodes that should be running the "
                                                  "daemon pod."),
    Column("Current", type="integer", description="The number of nodes that are running at least 1 daemon pod "
                                                  "and are supposed to run the daemon pod."),
    Column("Ready", type="integer", description="The number of nodes that should be running the daemon pod and "
                                                "have one or more of the daemon pod running and ready."),
    Column("Up-to-date", type="integer", description="The total number of nodes that are running updated "
                                                     "daemon pod"),
    Column("Available", type="integer", description="The number of nodes that should be running the daemon pod "
                                                    "and have one or more of the daemon pod running and "
                                                    "available (ready for at least spec.minReadySeconds)"),
    Column("Node Selector", description="NodeSelector is a selector which must be true for the pod to fit on "
                                        "a node. Selector which must match a node's labels for the pod to be "
                                        "scheduled on that node."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)

STATEFULSET_COLUMNS = (
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    AGE, CONTAINERS, IMAGES,
)

CONTROLLERREVISION_COLUMNS = (
    NAME,
    Column("Controller", description="Controller of the object"),
    Column("Revision", type="integer", description="Revision indicates the revision of the state represented "
                                                   "by Data."),
    AGE,
)


def _daemonset_cells(obj: dict, now: datetime.datetime) -> list:
    status = obj.get("status") or {}
    selector = _get(obj, "spec", "template", "spec", "nodeSelector", default=None) or {}
    return [_meta(obj).get("name", ""), *(int(status.get(f) or 0) for f in (
                "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
                "numberAvailable")),
            ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or tables.NONE,
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj)),
            format_label_selector(_get(obj, "spec", "selector"))]


def _statefulset_cells(obj: dict, now: datetime.datetime) -> list:
    status = obj.get("status") or {}
    desired = _get(obj, "spec", "replicas", default=1)
    return [_meta(obj).get("name", ""), f"{int(status.get('readyReplicas') or 0)}/{desired}",
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj))]


def _controllerrevision_cells(obj: dict, now: datetime.datetime) -> list:
    owner = next((r for r in _meta(obj).get("ownerReferences") or [] if r.get("controller")), None)
    controller = tables.NONE
    if owner is not None:
        group = (owner.get("apiVersion") or "").rpartition("/")[0]
        kind = (owner.get("kind") or "").lower()
        controller = f"{kind}.{group}/{owner.get('name', '')}" if group else f"{kind}/{owner.get('name', '')}"
    return [_meta(obj).get("name", ""), controller, int(obj.get("revision") or 0),
            age_since(_meta(obj).get("creationTimestamp"), now)]


tables.PRINTERS.update({
    "daemonsets": (DAEMONSET_COLUMNS, _daemonset_cells),
    "statefulsets": (STATEFULSET_COLUMNS, _statefulset_cells),
    "controllerrevisions": (CONTROLLERREVISION_COLUMNS, _controllerrevision_cells),
})
