"""``pkubectl describe``: a readable page per object, ending with its Events.

Pages are laid out like kubectl's describers: ``Label:<TAB>value`` lines
aligned by a Go-style tabwriter (padding 2), nested sections indented by two
spaces. Pods, Deployments, ReplicaSets, Services and Nodes get their own
sections; any other kind gets its metadata and a YAML dump of spec and status.
Events are found by ``involvedObject.*`` field selectors.
"""

from __future__ import annotations

import datetime
from typing import Callable, Optional

NONE = "<none>"
PADDING = 2
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# ---------------------------------------------------------------- layout

def tabwrite(lines: list[str], padding: int = PADDING) -> list[str]:
    """Go's text/tabwriter: tab-terminated cells align within blocks of consecutive lines
    that have a cell in that column; the text after a line's last tab is not a column."""
    cells = [line.split("\t") for line in lines]
    widths = [[0] * (len(c) - 1) for c in cells]

    def format_block(start: int, end: int, column: int) -> None:
        row = start
        while row < end:
            if len(cells[row]) - 1 <= column:
                row += 1
                continue
            stop = row
            while stop < end and len(cells[stop]) - 1 > column:
                stop += 1
            width = max(len(cells[k][column]) for k in range(row, stop)) + padding
            for k in range(row, stop):
                widths[k][column] = width
            format_block(row, stop, column + 1)
            row = stop

    format_block(0, len(lines), 0)
    return ["".join(cell.ljust(w) for cell, w in zip(c[:-1], ws)) + c[-1] for c, ws in zip(cells, widths)]


def field(title: str, value, indent: int = 0) -> str:
    text = NONE if value in (None, [], {}) else value
    return f"{' ' * indent}{title}:\t{text}"


def map_lines(title: str, values: Optional[dict], indent: int = 0) -> list[str]:
    """``Labels:  a=b`` with further pairs on continuation lines (``\\t`` keeps them aligned)."""
    if not values:
        return [field(title, NONE, indent)]
    keys = sorted(values)
    return [field(title, f"{keys[0]}={values[keys[0]]}", indent)] + [f"{' ' * indent}\t{k}={values[k]}" for k in keys[1:]]


def timestamp(value) -> str:
    """kubectl's describe time format: ``Thu, 26 Nov 2026 18:57:50 +0000``."""
    if not value:
        return NONE
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%a, %d %b %Y %H:%M:%S %z")


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def header(obj: dict, with_timestamp: bool = True) -> list[str]:
    meta = _meta(obj)
    lines = [field("Name", meta.get("name"))]
    if meta.get("namespace"):
        lines.append(field("Namespace", meta.get("namespace")))
    if with_timestamp:
        lines.append(field("CreationTimestamp", timestamp(meta.get("creationTimestamp"))))
    lines += map_lines("Labels", meta.get("labels"))
    lines += map_lines("Annotations", {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED})
    return lines


def _selector_text(selector: Optional[dict]) -> str:
    labels = (selector or {}).get("matchLabels", selector) if selector else {}
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or NONE


# ---------------------------------------------------------------- containers and pod templates

def container_lines(container: dict, status: Optional[dict], indent: int) -> list[str]:
    """One container: its name at ``indent``, its fields at 4 (kubectl's layout for pods and templates)."""
    pad = 4
    ports = [f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in container.get("ports") or []]
    host_ports = [f"{p.get('hostPort', 0)}/{p.get('protocol', 'TCP')}" for p in container.get("ports") or []]
    lines = [f"{' ' * indent}{container.get('name')}:", field("Image", container.get("image"), pad)]
    lines += [field("Port", ", ".join(ports) or NONE, pad), field("Host Port", ", ".join(host_ports) or NONE, pad)]
    for title in ("command", "args"):
        if container.get(title):
            lines.append(f"{' ' * pad}{title.capitalize()}:")
            lines += [f"{' ' * (pad + 2)}{part}" for part in container[title]]
    if status is not None:
        lines += _state_lines(status, pad)
    lines += _env_lines(container.get("env") or [], pad)
    mounts = [f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
              for m in container.get("volumeMounts") or []]
    lines.append(field("Mounts", mounts[0] if mounts else NONE, pad))
    lines += [f"{' ' * pad}\t{m}" for m in mounts[1:]]
    return lines


def _state_lines(status: dict, pad: int) -> list[str]:
    state = status.get("state") or {}
    lines = []
    if state:
        kind = next(iter(state))
        detail = state[kind] or {}
        lines.append(field("State", kind.capitalize(), pad))
        if detail.get("reason"):
            lines.append(field("Reason", detail["reason"], pad + 2))
        if kind == "terminated":
            lines.append(field("Exit Code", detail.get("exitCode", 0), pad + 2))
        if detail.get("startedAt"):
            lines.append(field("Started", timestamp(detail["startedAt"]), pad + 2))
    lines.append(field("Ready", str(bool(status.get("ready"))), pad))
    lines.append(field("Restart Count", status.get("restartCount", 0), pad))
    return lines


def _env_lines(env: list[dict], pad: int) -> list[str]:
    if not env:
        return [field("Environment", NONE, pad)]
    lines = [f"{' ' * pad}Environment:"]
    for var in env:
        value = var.get("value") if "value" in var else "<set from a source>"
        lines.append(field(var.get("name", ""), value, pad + 2))
    return lines


def volumes_lines(volumes: list[dict], indent: int = 0) -> list[str]:
    if not volumes:
        return [field("Volumes", NONE, indent)]
    lines = [f"{' ' * indent}Volumes:"]
    for volume in volumes:
        kind = next((k for k in volume if k != "name"), "unknown")
        lines.append(f"{' ' * (indent + 2)}{volume.get('name')}:")
        lines.append(field("Type", kind, indent + 4))
    return lines


def _tolerations(tolerations: list[dict]) -> list[str]:
    out = []
    for t in tolerations:
        text = t.get("key", "")
        if t.get("value"):
            text += f"={t['value']}"
        text += f":{t['effect']}" if t.get("effect") else ""
        text += f" op={t.get('operator', 'Equal')}" if t.get("operator") == "Exists" else ""
        if t.get("tolerationSeconds") is not None:
            text += f" for {t['tolerationSeconds']}s"
        out.append(text)
    return out


def scheduling_lines(spec: dict, indent: int = 0) -> list[str]:
    lines = map_lines("Node-Selectors", spec.get("nodeSelector"), indent)
    tolerations = _tolerations(spec.get("tolerations") or [])
    lines.append(field("Tolerations", tolerations[0] if tolerations else NONE, indent))
    lines += [f"{' ' * indent}\t{t}" for t in tolerations[1:]]
    return lines


def template_lines(template: dict) -> list[str]:
    spec = template.get("spec") or {}
    lines = ["Pod Template:"] + map_lines("Labels", _meta(template).get("labels"), 2)
    if spec.get("serviceAccountName"):
        lines.append(field("Service Account", spec["serviceAccountName"], 2))
    lines.append("  Containers:")
    for container in spec.get("containers") or []:
        lines += container_lines(container, None, 3)
    return lines + volumes_lines(spec.get("volumes") or [], 2) + scheduling_lines(spec, 2)


# ---------------------------------------------------------------- kinds

def describe_pod(obj: dict) -> list[str]:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    node = spec.get("nodeName")
    lines = [field("Name", meta.get("name")), field("Namespace", meta.get("namespace")),
             field("Priority", spec.get("priority", 0)),
             field("Service Account", spec.get("serviceAccountName") or "default"),
             field("Node", f"{node}/{status.get('hostIP', '')}" if node and status.get("hostIP") else node)]
    if status.get("startTime"):
        lines.append(field("Start Time", timestamp(status["startTime"])))
    lines += map_lines("Labels", meta.get("labels"))
    lines += map_lines("Annotations", {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED})
    lines += [field("Status", "Terminating" if meta.get("deletionTimestamp") else status.get("phase")),
              field("IP", status.get("podIP", "")), field("IPs", NONE if not status.get("podIPs") else "")]
    lines += [f"  IP:\t{p.get('ip')}" for p in status.get("podIPs") or []]
    by_name = {s.get("name"): s for s in status.get("containerStatuses") or []}
    lines.append("Containers:")
    for container in spec.get("containers") or []:
        lines += container_lines(container, by_name.get(container.get("name")), 2)
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["Conditions:", "  Type\tStatus"] + [f"  {c.get('type', '')}\t{c.get('status', '')} " for c in conditions]
    return lines + volumes_lines(spec.get("volumes") or []) + [field("QoS Class", status.get("qosClass") or "BestEffort")] \
        + scheduling_lines(spec)


def describe_deployment(obj: dict) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(obj)
    lines.append(field("Selector", _selector_text(spec.get("selector"))))
    lines.append(field("Replicas", f"{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
                                   f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                                   f"{status.get('unavailableReplicas', 0)} unavailable"))
    strategy = spec.get("strategy") or {}
    lines += [field("StrategyType", strategy.get("type", "RollingUpdate")),
              field("MinReadySeconds", spec.get("minReadySeconds", 0))]
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        lines.append(field("RollingUpdateStrategy", f"{rolling.get('maxUnavailable', '25%')} max unavailable, "
                                                    f"{rolling.get('maxSurge', '25%')} max surge"))
    lines += template_lines(spec.get("template") or {})
    return lines + _conditions_table(status.get("conditions") or [])


def describe_replicaset(obj: dict) -> list[str]:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    lines = [field("Name", meta.get("name")), field("Namespace", meta.get("namespace")),
             field("Selector", _selector_text(spec.get("selector")))]
    lines += map_lines("Labels", meta.get("labels"))
    lines += map_lines("Annotations", {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED})
    owners = [f"{o.get('kind')}/{o.get('name')}" for o in meta.get("ownerReferences") or [] if o.get("controller")]
    if owners:
        lines.append(field("Controlled By", owners[0]))
    lines += [field("Replicas", f"{status.get('replicas', 0)} current / {spec.get('replicas', 1)} desired"),
              field("Pods Status", f"{status.get('readyReplicas', 0)} Running / 0 Waiting / 0 Succeeded / 0 Failed")]
    return lines + template_lines(spec.get("template") or {}) + _conditions_table(status.get("conditions") or [])


def _conditions_table(conditions: list[dict]) -> list[str]:
    if not conditions:
        return []
    return ["Conditions:", "  Type\tStatus\tReason", "  ----\t------\t------"] + \
        [f"  {c.get('type', '')}\t{c.get('status', '')}\t{c.get('reason', '')}" for c in conditions]


def describe_service(obj: dict, endpoints: Optional[dict] = None) -> list[str]:
    spec = obj.get("spec") or {}
    lines = header(obj, with_timestamp=False)
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    lines += [field("Selector", _selector_text(spec.get("selector"))), field("Type", spec.get("type", "ClusterIP")),
              field("IP Family Policy", spec.get("ipFamilyPolicy", "SingleStack")),
              field("IP Families", ",".join(spec.get("ipFamilies") or ["IPv4"])),
              field("IP", spec.get("clusterIP")), field("IPs", ",".join(ips) or NONE)]
    for port in spec.get("ports") or []:
        protocol = port.get("protocol", "TCP")
        lines.append(field("Port", f"{port.get('name') or '<unset>'}\t{port.get('port')}/{protocol}"))
        lines.append(field("TargetPort", f"{port.get('targetPort', port.get('port'))}/{protocol}"))
        if port.get("nodePort"):
            lines.append(field("NodePort", f"{port.get('name') or '<unset>'}\t{port['nodePort']}/{protocol}"))
        lines.append(field("Endpoints", _endpoints_for_port(endpoints, port)))
    lines += [field("Session Affinity", spec.get("sessionAffinity", "None")),
              field("Internal Traffic Policy", spec.get("internalTrafficPolicy", "Cluster"))]
    return lines


def _endpoints_for_port(endpoints: Optional[dict], port: dict) -> str:
    """``10.0.0.5:8080,10.0.0.6:8080`` for one service port, from the Endpoints object."""
    found = []
    for subset in (endpoints or {}).get("subsets") or []:
        for ep_port in subset.get("ports") or []:
            if (ep_port.get("name") or "") == (port.get("name") or ""):
                found += [f"{a.get('ip')}:{ep_port.get('port')}" for a in subset.get("addresses") or []]
    return ",".join(found) or NONE


def describe_node(obj: dict) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(obj)
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}" for t in spec.get("taints") or []]
    lines += [field("Taints", taints[0] if taints else NONE)] + [f"\t{t}" for t in taints[1:]]
    lines.append(field("Unschedulable", str(bool(spec.get("unschedulable"))).lower()))
    lines += ["Conditions:", "  Type\tStatus\tLastHeartbeatTime\tReason\tMessage",
              "  ----\t------\t-----------------\t------\t-------"]
    lines += [f"  {c.get('type', '')}\t{c.get('status', '')}\t{timestamp(c.get('lastHeartbeatTime'))}\t"
              f"{c.get('reason', '')}\t{c.get('message', '')}" for c in status.get("conditions") or []]
    lines += ["Addresses:"] + [f"  {a.get('type')}:\t{a.get('address')}" for a in status.get("addresses") or []]
    for section in ("capacity", "allocatable"):
        lines += [f"{section.capitalize()}:"] + [f"  {k}:\t{v}" for k, v in sorted((status.get(section) or {}).items())]
    info = status.get("nodeInfo") or {}
    lines += ["System Info:"] + [f"  {k[0].upper() + k[1:]}:\t{v}" for k, v in info.items()]
    if spec.get("podCIDR"):
        lines.append(field("PodCIDR", spec["podCIDR"]))
    return lines


def describe_generic(obj: dict) -> list[str]:
    from pkube.kubectl.printers import dump_yaml

    lines = header(obj)
    for section in ("spec", "status", "data", "subsets"):
        if obj.get(section):
            lines.append(f"{section.capitalize()}:")
            lines += ["  " + line for line in dump_yaml(obj[section]).splitlines()]
    return lines


DESCRIBERS: dict[str, Callable[[dict], list[str]]] = {
    "Pod": describe_pod, "Deployment": describe_deployment, "ReplicaSet": describe_replicaset,
    "Service": describe_service, "Node": describe_node,
}


# ---------------------------------------------------------------- events

def events_section(events: list[dict], now: datetime.datetime) -> list[str]:
    """kubectl's Events table (Type, Reason, Age, From, Message), oldest first; ``<none>`` if empty."""
    if not events:
        return ["Events:\t<none>"]
    lines = ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        source = (event.get("source") or {}).get("component") or event.get("reportingController", "")
        lines.append(f"  {event.get('type', '')}\t{event.get('reason', '')}\t{_event_age(event, now)}\t"
                     f"{source}\t{(event.get('message') or '').strip()}")
    return lines


def _event_age(event: dict, now: datetime.datetime) -> str:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    try:
        moment = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int((now - moment).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d"


def describe(obj: dict, events: list[dict], now: Optional[datetime.datetime] = None,
             endpoints: Optional[dict] = None) -> str:
    """The full page for one object, aligned like kubectl's; ``endpoints`` is a Service's Endpoints."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    if obj.get("kind") == "Service":
        body = describe_service(obj, endpoints)
    else:
        body = DESCRIBERS.get(obj.get("kind", ""), describe_generic)(obj)
    lines = body + events_section(events, moment)
    return "\n".join(tabwrite(lines)) + "\n"


def event_selector(obj: dict) -> str:
    """The field selector finding an object's Events."""
    meta = _meta(obj)
    terms = [f"involvedObject.name={meta.get('name', '')}", f"involvedObject.kind={obj.get('kind', '')}"]
    if meta.get("namespace"):
        terms.append(f"involvedObject.namespace={meta['namespace']}")
    if meta.get("uid"):
        terms.append(f"involvedObject.uid={meta['uid']}")
    return ",".join(terms)
