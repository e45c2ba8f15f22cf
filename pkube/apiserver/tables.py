"""Server-side printing: a list of objects as a meta.k8s.io ``Table`` with kubectl's columns.

The apiserver answers a Table when the request's Accept header asks for
``as=Table;g=meta.k8s.io;v=v1`` (or v1beta1). The columns, their order, the
priority-1 ("wide") columns and the cell values follow Kubernetes'
``pkg/printers/internalversion`` handlers, so that the real kubectl prints
exactly what it prints against Kubernetes. Like the real apiserver, every row
carries the wide cells too; kubectl drops priority-1 columns unless ``-o wide``.

``to_table`` is pure: ``now`` is injected so that ages are testable.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Callable, Optional

from pkube.api.jsonpath import JSONPathError, format_value, values_at

NONE = "<none>"
INCLUDE_OBJECT_CHOICES = ("Metadata", "Object", "None")


@dataclass(frozen=True)
class Column:
    """One TableColumnDefinition; ``priority`` 1 columns are shown by ``-o wide`` only."""

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


NAME = Column("Name", format="name",
              description="Name must be unique within a namespace. More info: "
                          "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE = Column("Age", description="CreationTimestamp is a timestamp representing the server time "
                                "when this object was created.")
CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")
SELECTOR = Column("Selector", priority=1, description="Label selector for pods.")


# ---------------------------------------------------------------- time and small formatters

def human_duration(seconds: float) -> str:
    """A duration as kubectl prints ages (apimachinery ``duration.HumanDuration``).

    Precise at small scales (``90s``, ``3m12s``, ``2h5m``, ``2d3h``), coarse at
    large ones (``45d``, ``3y``); a clock skew of under 2 s prints ``0s``.
    """
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return _with_remainder(minutes, "m", secs % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _with_remainder(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _with_remainder(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _with_remainder(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _with_remainder(value: int, unit: str, rest: int, rest_unit: str) -> str:
    return f"{value}{unit}{rest}{rest_unit}" if rest else f"{value}{unit}"


def parse_time(value) -> Optional[datetime.datetime]:
    """An RFC 3339 timestamp as an aware datetime; None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def age_since(timestamp, now: datetime.datetime) -> str:
    """kubectl's ``translateTimestampSince``: ``<unknown>`` for a missing time."""
    moment = parse_time(timestamp)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


def format_labels(labels: Optional[dict]) -> str:
    """``k=v,k2=v2`` sorted by key, or ``<none>`` (labels.FormatLabels)."""
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(selector: Optional[dict]) -> str:
    """metav1.FormatLabelSelector: matchLabels then matchExpressions, ``<none>`` if empty."""
    if not selector:
        return NONE
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        terms.append(_format_expression(expr))
    return ",".join(terms) or NONE


def _format_expression(expr: dict) -> str:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "Exists":
        return key
    if op == "DoesNotExist":
        return "!" + key
    word = {"In": "in", "NotIn": "notin"}.get(op, op)
    return f"{key} {word} ({','.join(sorted(values))})"


def _get(obj: dict, *path, default=None):
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _template_containers(obj: dict) -> list[dict]:
    return _get(obj, "spec", "template", "spec", "containers", default=[])


def _names_and_images(containers: list[dict]) -> list[str]:
    return [",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers)]


# ---------------------------------------------------------------- pods

POD_COLUMNS = (
    NAME,
    Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    Column("Restarts", description="The number of times the containers in this pod have been "
                                   "restarted and when the last container in this pod has restarted."),
    AGE,
    Column("IP", priority=1, description="IP address allocated to the pod. Routable at least within the cluster."),
    Column("Node", priority=1, description="NodeName is a request to schedule this pod onto a specific node."),
    Column("Nominated Node", priority=1, description="nominatedNodeName is set only when this pod "
                                                     "preempts other pods on the node."),
    Column("Readiness Gates", priority=1, description="If specified, all readiness gates will be "
                                                      "evaluated for pod readiness."),
)


@dataclass
class _PodSummary:
    """What kubectl's printPod accumulates while walking container statuses."""

    reason: str
    ready: int = 0
    total: int = 0
    restarts: int = 0
    last_restart: Optional[datetime.datetime] = None
    sidecar_restarts: int = 0
    sidecar_last_restart: Optional[datetime.datetime] = None

    def saw_termination(self, status: dict) -> None:
        self.last_restart = _later(self.last_restart, status)

    def saw_sidecar(self, status: dict) -> None:
        """A restartable init container: its restarts count even once the pod is initialized."""
        self.sidecar_restarts += int(status.get("restartCount") or 0)
        self.sidecar_last_restart = _later(self.sidecar_last_restart, status)


def _later(current: Optional[datetime.datetime], status: dict) -> Optional[datetime.datetime]:
    finished = parse_time(_get(status, "lastState", "terminated", "finishedAt"))
    if finished and (current is None or finished > current):
        return finished
    return current


def pod_status_reason(pod: dict) -> str:
    """The STATUS column of ``kubectl get pods`` (Running, Completed, CrashLoopBackOff, Init:0/1...)."""
    return _summarize_pod(pod).reason


def _summarize_pod(pod: dict) -> _PodSummary:
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    summary = _PodSummary(reason=status.get("reason") or phase,
                          total=len(_get(pod, "spec", "containers", default=[])))
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            summary.reason = "SchedulingGated"
    initializing = _walk_init_containers(pod, summary)
    if not initializing or _condition_true(status, "Initialized"):
        _walk_containers(status, summary)
    if _get(pod, "metadata", "deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            summary.reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            summary.reason = "Terminating"
    return summary


def _restartable(container: Optional[dict]) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _walk_init_containers(pod: dict, summary: _PodSummary) -> bool:
    """Count init containers; True while the pod is still initializing (reason set)."""
    specs = {c.get("name"): c for c in _get(pod, "spec", "initContainers", default=[])}
    summary.total += sum(1 for c in specs.values() if _restartable(c))
    for index, cstatus in enumerate(_get(pod, "status", "initContainerStatuses", default=[])):
        summary.restarts += int(cstatus.get("restartCount") or 0)
        summary.saw_termination(cstatus)
        if _restartable(specs.get(cstatus.get("name"))):
            summary.saw_sidecar(cstatus)
        state = cstatus.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if _restartable(specs.get(cstatus.get("name"))) and cstatus.get("started"):
            summary.ready += 1 if cstatus.get("ready") else 0
            continue
        if terminated:
            summary.reason = "Init:" + _termination_reason(terminated)
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            summary.reason = "Init:" + waiting["reason"]
        else:
            summary.reason = f"Init:{index}/{len(specs)}"
        return True
    return False


def _termination_reason(terminated: dict) -> str:
    if terminated.get("reason"):
        return terminated["reason"]
    if terminated.get("signal"):
        return f"Signal:{terminated['signal']}"
    return f"ExitCode:{terminated.get('exitCode', 0)}"


def _walk_containers(status: dict, summary: _PodSummary) -> None:
    summary.restarts, summary.last_restart = summary.sidecar_restarts, summary.sidecar_last_restart
    has_running = False
    for cstatus in reversed(status.get("containerStatuses") or []):
        summary.restarts += int(cstatus.get("restartCount") or 0)
        summary.saw_termination(cstatus)
        state = cstatus.get("state") or {}
        if _get(state, "waiting", "reason"):
            summary.reason = state["waiting"]["reason"]
        elif state.get("terminated") is not None:
            summary.reason = _termination_reason(state["terminated"])
        elif cstatus.get("ready") and state.get("running") is not None:
            has_running = True
            summary.ready += 1
    if summary.reason == "Completed" and has_running:
        summary.reason = "Running" if _condition_true(status, "Ready") else "NotReady"


def _condition_true(status: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _pod_cells(pod: dict, now: datetime.datetime) -> list:
    summary = _summarize_pod(pod)
    restarts = str(summary.restarts)
    if summary.restarts and summary.last_restart:
        restarts += f" ({human_duration((now - summary.last_restart).total_seconds())} ago)"
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    ip = ips[0] if ips else status.get("podIP") or NONE
    return [_meta(pod).get("name", ""), f"{summary.ready}/{summary.total}", summary.reason,
            restarts, age_since(_meta(pod).get("creationTimestamp"), now),
            ip, _get(pod, "spec", "nodeName") or NONE, status.get("nominatedNodeName") or NONE,
            _readiness_gates(pod)]


def _readiness_gates(pod: dict) -> str:
    gates = _get(pod, "spec", "readinessGates", default=[])
    if not gates:
        return NONE
    conditions = {c.get("type"): c.get("status") for c in _get(pod, "status", "conditions", default=[])}
    true = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{true}/{len(gates)}"


def _pod_conditions(pod: dict) -> Optional[list]:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return None


# ---------------------------------------------------------------- workloads

DEPLOYMENT_COLUMNS = (
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    Column("Up-to-date", type="integer", description="Total number of non-terminated pods targeted by "
                                                     "this deployment that have the desired template spec."),
    Column("Available", type="integer", description="Total number of available pods (ready for at "
                                                    "least minReadySeconds) targeted by this deployment."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _deployment_cells(obj: dict, now: datetime.datetime) -> list:
    status = obj.get("status") or {}
    desired = _get(obj, "spec", "replicas", default=1)
    return [_meta(obj).get("name", ""), f"{status.get('readyReplicas', 0)}/{desired}",
            int(status.get("updatedReplicas", 0)), int(status.get("availableReplicas", 0)),
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj)),
            format_label_selector(_get(obj, "spec", "selector"))]


REPLICASET_COLUMNS = (
    NAME,
    Column("Desired", type="integer", description="Replicas is the number of desired replicas."),
    Column("Current", type="integer", description="Replicas is the most recently observed number of replicas."),
    Column("Ready", type="integer", description="The number of ready replicas for this replica set."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _replicaset_cells(obj: dict, now: datetime.datetime) -> list:
    status = obj.get("status") or {}
    return [_meta(obj).get("name", ""), int(_get(obj, "spec", "replicas", default=1)),
            int(status.get("replicas", 0)), int(status.get("readyReplicas", 0)),
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj)),
            format_label_selector(_get(obj, "spec", "selector"))]


# ---------------------------------------------------------------- services and endpoints

SERVICE_COLUMNS = (
    NAME,
    Column("Type", description="type determines how the Service is exposed."),
    Column("Cluster-IP", description="clusterIP is the IP address of the service."),
    Column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the "
                                      "cluster will also accept traffic for this service."),
    Column("Port(s)", description="The list of ports that are exposed by this service."),
    AGE,
    Column("Selector", priority=1, description="Route service traffic to pods with label keys and "
                                               "values matching this selector."),
)


def _service_cells(obj: dict, now: datetime.datetime) -> list:
    spec = obj.get("spec") or {}
    return [_meta(obj).get("name", ""), spec.get("type") or "ClusterIP",
            spec.get("clusterIP") or NONE, _service_external_ip(obj), _service_ports(spec),
            age_since(_meta(obj).get("creationTimestamp"), now), format_labels(spec.get("selector"))]


def _service_external_ip(obj: dict) -> str:
    spec = obj.get("spec") or {}
    kind, external = spec.get("type") or "ClusterIP", spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if kind == "LoadBalancer":
        ingress = _get(obj, "status", "loadBalancer", "ingress", default=[])
        found = [i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")]
        return ",".join(found + external) or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(spec: dict) -> str:
    parts = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            parts.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            parts.append(f"{port.get('port')}/{protocol}")
    return ",".join(parts) or NONE


ENDPOINTS_COLUMNS = (
    NAME, Column("Endpoints", description="Endpoints is the list of endpoints in the service."), AGE)
MAX_LISTED_ENDPOINTS = 3


def format_endpoints(obj: dict) -> str:
    """``10.0.0.1:80,10.0.0.2:80 + 2 more...`` (kubectl's formatEndpoints), ``<none>`` if no subsets."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return NONE
    listed, count = [], 0
    for subset in subsets:
        ips = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or [None]
        for port in ports:
            count += len(ips)
            for ip in ips:
                if len(listed) < MAX_LISTED_ENDPOINTS:
                    listed.append(ip if port is None else _join_host_port(ip, port.get("port")))
    text = ",".join(listed)
    return f"{text} + {count - MAX_LISTED_ENDPOINTS} more..." if count > MAX_LISTED_ENDPOINTS else text


def _join_host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoints_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), format_endpoints(obj),
            age_since(_meta(obj).get("creationTimestamp"), now)]


ENDPOINTSLICE_COLUMNS = (
    NAME,
    Column("AddressType", description="addressType specifies the type of address carried by this EndpointSlice."),
    Column("Ports", description="ports specifies the list of network ports exposed by each endpoint."),
    Column("Endpoints", description="endpoints is a list of unique endpoints in this slice."),
    AGE,
)


def _endpointslice_cells(obj: dict, now: datetime.datetime) -> list:
    ports = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in obj.get("ports") or []]
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_meta(obj).get("name", ""), obj.get("addressType", ""),
            _first_three(ports), _first_three(addresses),
            age_since(_meta(obj).get("creationTimestamp"), now)]


def _first_three(items: list[str]) -> str:
    if not items:
        return "<unset>"
    text = ",".join(items[:MAX_LISTED_ENDPOINTS])
    extra = len(items) - MAX_LISTED_ENDPOINTS
    return f"{text} + {extra} more..." if extra > 0 else text


# ---------------------------------------------------------------- cluster objects

NODE_COLUMNS = (
    NAME,
    Column("Status", description="The status of the node"),
    Column("Roles", description="The roles of the node"),
    AGE,
    Column("Version", description="Kubelet Version reported by the node."),
    Column("Internal-IP", priority=1, description="List of addresses reachable to the node."),
    Column("External-IP", priority=1, description="List of addresses reachable to the node."),
    Column("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release."),
    Column("Kernel-Version", priority=1, description="Kernel Version reported by the node."),
    Column("Container-Runtime", priority=1, description="Container Runtime Version reported by the node."),
)
NODE_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_status(node: dict) -> str:
    """``Ready``, ``NotReady`` or ``Unknown``, plus ``,SchedulingDisabled`` when cordoned."""
    ready = [c for c in _get(node, "status", "conditions", default=[]) if c.get("type") == "Ready"]
    parts = [("Ready" if ready[0].get("status") == "True" else "NotReady") if ready else "Unknown"]
    if _get(node, "spec", "unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: dict) -> str:
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith(NODE_ROLE_PREFIX) and key[len(NODE_ROLE_PREFIX):]:
            roles.add(key[len(NODE_ROLE_PREFIX):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def _node_address(node: dict, kind: str) -> str:
    for address in _get(node, "status", "addresses", default=[]):
        if address.get("type") == kind:
            return address.get("address", "")
    return NONE


def _node_cells(obj: dict, now: datetime.datetime) -> list:
    info = _get(obj, "status", "nodeInfo", default={})
    return [_meta(obj).get("name", ""), node_status(obj), node_roles(obj),
            age_since(_meta(obj).get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            _node_address(obj, "InternalIP"), _node_address(obj, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


NAMESPACE_COLUMNS = (NAME, Column("Status", description="The status of the namespace"), AGE)


def _namespace_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), _get(obj, "status", "phase", default="Active"),
            age_since(_meta(obj).get("creationTimestamp"), now)]


SECRET_COLUMNS = (NAME, Column("Type", description="Used to facilitate programmatic handling of secret data."),
                  Column("Data", type="integer", description="Data contains the secret data."), AGE)


def _secret_cells(obj: dict, now: datetime.datetime) -> list:
    count = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [_meta(obj).get("name", ""), obj.get("type") or "Opaque", count,
            age_since(_meta(obj).get("creationTimestamp"), now)]


CONFIGMAP_COLUMNS = (NAME, Column("Data", type="integer", description="Data contains the configuration data."), AGE)


def _configmap_cells(obj: dict, now: datetime.datetime) -> list:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name", ""), count, age_since(_meta(obj).get("creationTimestamp"), now)]


SERVICEACCOUNT_COLUMNS = (NAME, Column("Secrets", type="integer", description="Secrets of the service account."), AGE)


def _serviceaccount_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), len(obj.get("secrets") or []),
            age_since(_meta(obj).get("creationTimestamp"), now)]


LEASE_COLUMNS = (NAME, Column("Holder", description="The holder of the lease"), AGE)


def _lease_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), _get(obj, "spec", "holderIdentity", default=""),
            age_since(_meta(obj).get("creationTimestamp"), now)]


EVENT_COLUMNS = (
    Column("Last Seen", description="Time when this Event was last observed."),
    Column("Type", description="Type of this event (Normal, Warning)."),
    Column("Reason", description="This should be a short, machine understandable string."),
    Column("Object", description="The object that this event is about."),
    Column("Subobject", priority=1, description="The field path of the involved object."),
    Column("Source", priority=1, description="The component reporting this event."),
    Column("Message", description="A human-readable description of the status of this operation."),
    Column("First Seen", priority=1, description="The time at which the event was first recorded."),
    Column("Count", type="integer", priority=1, description="The number of times this event has occurred."),
    Column("Name", priority=1, format="name", description="Name of the event."),
)


def _event_cells(obj: dict, now: datetime.datetime) -> list:
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    last = obj.get("lastTimestamp") or first
    count = obj.get("count") or 1
    if obj.get("series"):
        last, count = obj["series"].get("lastObservedTime") or last, obj["series"].get("count") or count
    involved = obj.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [age_since(last, now), obj.get("type", ""), obj.get("reason", ""), target,
            involved.get("fieldPath", ""), _event_source(obj), (obj.get("message") or "").strip(),
            age_since(first, now), int(count), _meta(obj).get("name", "")]


def _event_source(obj: dict) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


DEFAULT_COLUMNS = (NAME, AGE)
CRD_COLUMNS = (NAME, Column("Created At", type="date", description="CreationTimestamp is a timestamp "
                            "representing the server time when this object was created."))


def _crd_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), _meta(obj).get("creationTimestamp")]


def _default_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), age_since(_meta(obj).get("creationTimestamp"), now)]


Printer = tuple[tuple[Column, ...], Callable[[dict, datetime.datetime], list]]
PRINTERS: dict[str, Printer] = {
    "pods": (POD_COLUMNS, _pod_cells),
    "deployments": (DEPLOYMENT_COLUMNS, _deployment_cells),
    "replicasets": (REPLICASET_COLUMNS, _replicaset_cells),
    "services": (SERVICE_COLUMNS, _service_cells),
    "endpoints": (ENDPOINTS_COLUMNS, _endpoints_cells),
    "endpointslices": (ENDPOINTSLICE_COLUMNS, _endpointslice_cells),
    "nodes": (NODE_COLUMNS, _node_cells),
    "namespaces": (NAMESPACE_COLUMNS, _namespace_cells),
    "secrets": (SECRET_COLUMNS, _secret_cells),
    "configmaps": (CONFIGMAP_COLUMNS, _configmap_cells),
    "serviceaccounts": (SERVICEACCOUNT_COLUMNS, _serviceaccount_cells),
    "leases": (LEASE_COLUMNS, _lease_cells),
    "events": (EVENT_COLUMNS, _event_cells),
    "customresourcedefinitions": (CRD_COLUMNS, _crd_cells),
    "limitranges": (CRD_COLUMNS, _crd_cells),      # upstream prints LimitRanges as CRDs: NAME, CREATED AT
}


# ---------------------------------------------------------------- the Table

def columns_for(resource: str) -> tuple[Column, ...]:
    """The columns of ``resource`` (a plural such as "pods"); NAME AGE for unknown ones."""
    return PRINTERS.get(resource, (DEFAULT_COLUMNS, None))[0]


def cells_for(resource: str, obj: dict, now: datetime.datetime) -> list:
    """One row's cells, in the order of ``columns_for(resource)`` (wide cells included)."""
    return PRINTERS.get(resource, (None, _default_cells))[1](obj, now)


def to_table(resource: str, objects: list[dict], *, include_object: str = "Metadata",
             now: Optional[datetime.datetime] = None, api_version: str = "meta.k8s.io/v1") -> dict:
    """A ``Table`` of ``objects`` (all of kind ``resource``, a plural) with kubectl's columns.

    ``include_object`` is the request's ``includeObject``: "Metadata" puts a
    PartialObjectMetadata in each row (what kubectl needs for ``-A`` and
    ``--show-labels``), "Object" the whole object, "None" nothing. ``now``
    defaults to the current UTC time. The caller fills ``metadata``
    (resourceVersion, continue) from its list. Raises ValueError for an unknown
    ``include_object``.
    """
    if include_object not in INCLUDE_OBJECT_CHOICES:
        raise ValueError(f"includeObject must be one of {', '.join(INCLUDE_OBJECT_CHOICES)}, "
                         f"not {include_object!r}")
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": {},
        "columnDefinitions": [c.definition() for c in columns_for(resource)],
        "rows": [_row(resource, obj, include_object, moment, api_version) for obj in objects],
    }


def custom_table(columns: tuple, objects: list[dict], *, include_object: str = "Metadata",
                 now: Optional[datetime.datetime] = None, api_version: str = "meta.k8s.io/v1") -> dict:
    """A ``Table`` of custom resources: Name, then the CRD's additionalPrinterColumns
    (``api.crd.PrinterColumn``: JSONPath evaluated per object, cells typed as
    Kubernetes' tableconvertor types them; a missing value is null)."""
    if include_object not in INCLUDE_OBJECT_CHOICES:
        raise ValueError(f"includeObject must be one of {', '.join(INCLUDE_OBJECT_CHOICES)}")
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    definitions = [NAME.definition()] + [
        Column(c.name, c.type, c.description or f"Custom resource definition column (in JSONPath format): "
                                                 f"{c.json_path}", c.priority, c.format).definition()
        for c in columns]
    rows = []
    for obj in objects:
        cells = [_meta(obj).get("name", "")] + [_custom_cell(c, obj, moment) for c in columns]
        rows.append(_row_with(cells, obj, include_object, api_version))
    return {"kind": "Table", "apiVersion": api_version, "metadata": {}, "columnDefinitions": definitions,
            "rows": rows}


def _custom_cell(column, obj: dict, now: datetime.datetime):
    try:
        found = values_at(column.json_path, obj)
    except JSONPathError:
        return None
    if not found or found[0] is None:
        return None
    value = found[0]
    if column.type == "string":
        return format_value(value)
    if column.type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column.type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if column.type == "boolean" and isinstance(value, bool):
        return value
    if column.type == "date" and isinstance(value, str):
        return age_since(value, now) if parse_time(value) else "<invalid>"
    return None


def _row_with(cells: list, obj: dict, include_object: str, api_version: str) -> dict:
    row: dict = {"cells": cells}
    if include_object == "Object":
        row["object"] = obj
    elif include_object == "Metadata":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": _meta(obj)}
    return row


def _row(resource: str, obj: dict, include_object: str, now: datetime.datetime, api_version: str) -> dict:
    row: dict = {"cells": cells_for(resource, obj, now)}
    if resource == "pods" and (conditions := _pod_conditions(obj)):
        row["conditions"] = conditions
    if include_object == "Object":
        row["object"] = obj
    elif include_object == "Metadata":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version,
                         "metadata": _meta(obj)}
    return row


# The apps printers (DaemonSet, StatefulSet, ControllerRevision) register themselves in PRINTERS.
import pkube.apiserver.tables_apps  # noqa: E402,F401
# The batch printers (Job, CronJob) and ReplicationController's register themselves in PRINTERS.
import pkube.apiserver.tables_batch  # noqa: E402,F401
# The PodDisruptionBudget and HorizontalPodAutoscaler printers register themselves in PRINTERS.
import pkube.apiserver.tables_policy  # noqa: E402,F401
# The PersistentVolume, PersistentVolumeClaim and StorageClass printers register themselves in PRINTERS.
import pkube.apiserver.tables_storage  # noqa: E402,F401
# The CertificateSigningRequest printer registers itself in PRINTERS.
import pkube.apiserver.tables_certificates  # noqa: E402,F401
# The Ingress, IngressClass and NetworkPolicy printers register themselves in PRINTERS.
import pkube.apiserver.tables_networking  # noqa: E402,F401
