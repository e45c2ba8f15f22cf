"""``pkubectl describe``: a readable page per object, ending with its Events.

Pods, Deployments, ReplicaSets, Services and Nodes get their own sections
(like kubectl's describers); any other kind gets the metadata and a YAML dump
of spec and status. Events are found by ``involvedObject.*`` field selectors.
"""

from __future__ import annotations

import datetime
from typing import Callable, Optional

NONE = "<none>"


def _lines_of_map(title: str, values: Optional[dict], width: int = 16) -> list[str]:
    pad = f"{title + ':':<{width}}"
    if not values:
        return [f"{pad}{NONE}"]
    keys = sorted(values)
    lines = [f"{pad}{keys[0]}={values[keys[0]]}"]
    lines += [f"{'':<{width}}{k}={values[k]}" for k in keys[1:]]
    return lines


def _field(title: str, value, width: int = 16) -> str:
    text = NONE if value in (None, "", []) else value
    return f"{title + ':':<{width}}{text}"


def header(obj: dict) -> list[str]:
    meta = obj.get("metadata") or {}
    lines = [_field("Name", meta.get("name"))]
    if meta.get("namespace"):
        lines.append(_field("Namespace", meta.get("namespace")))
    lines += [_field("CreationTimestamp", _timestamp(meta.get("creationTimestamp")))]
    lines += _lines_of_map("Labels", meta.get("labels"))
    lines += _lines_of_map("Annotations", {k: v for k, v in (meta.get("annotations") or {}).items()
                                           if k != "kubectl.kubernetes.io/last-applied-configuration"})
    return lines


def _timestamp(value) -> str:
    if not value:
        return NONE
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%a, %d %b %Y %H:%M:%S %z")


def _containers(containers: list[dict], statuses: list[dict]) -> list[str]:
    by_name = {s.get("name"): s for s in statuses}
    lines = []
    for c in containers:
        status = by_name.get(c.get("name"), {})
        lines.append(f"  {c.get('name')}:")
        lines.append(f"    {_field('Image', c.get('image'), 14)}")
        ports = ",".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or [])
        lines.append(f"    {_field('Port', ports, 14)}")
        if c.get("command"):
            lines.append(f"    {_field('Command', ' '.join(c['command']), 14)}")
        state = status.get("state") or {}
        if state:
            kind = next(iter(state))
            detail = state[kind] or {}
            lines.append(f"    {_field('State', kind.capitalize(), 14)}")
            if detail.get("reason"):
                lines.append(f"      {_field('Reason', detail['reason'], 12)}")
            if kind == "terminated":
                lines.append(f"      {_field('Exit Code', detail.get('exitCode', 0), 12)}")
        if status:
            lines.append(f"    {_field('Ready', str(bool(status.get('ready'))), 14)}")
            lines.append(f"    {_field('Restart Count', status.get('restartCount', 0), 14)}")
        env = c.get("env") or []
        if env:
            lines.append("    Environment:")
            lines += [f"      {e.get('name')}:  {e.get('value', '<set from a source>')}" for e in env]
    return lines


def describe_pod(obj: dict) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(obj)
    lines += [_field("Node", spec.get("nodeName")), _field("Status", status.get("phase")),
              _field("IP", status.get("podIP")), "Containers:"]
    lines += _containers(spec.get("containers") or [], status.get("containerStatuses") or [])
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["Conditions:", "  Type              Status"]
        lines += [f"  {c.get('type', ''):<18}{c.get('status', '')}" for c in conditions]
    return lines


def describe_workload(obj: dict) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(obj)
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    lines.append(_field("Selector", ",".join(f"{k}={v}" for k, v in sorted(selector.items()))))
    lines.append(_field("Replicas", f"{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
                                    f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                                    f"{status.get('unavailableReplicas', 0)} unavailable"
                        if obj.get("kind") == "Deployment" else
                        f"{status.get('replicas', 0)} current / {spec.get('replicas', 1)} desired"))
    if obj.get("kind") == "Deployment":
        lines.append(_field("StrategyType", (spec.get("strategy") or {}).get("type", "RollingUpdate")))
    template = spec.get("template") or {}
    lines += ["Pod Template:"]
    lines += ["  " + line for line in _lines_of_map("Labels", (template.get("metadata") or {}).get("labels"), 14)]
    lines += ["  Containers:"] + ["  " + line for line in _containers((template.get("spec") or {}).get("containers") or [], [])]
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["Conditions:", "  Type           Status  Reason"]
        lines += [f"  {c.get('type', ''):<15}{c.get('status', ''):<8}{c.get('reason', '')}" for c in conditions]
    return lines


def describe_service(obj: dict) -> list[str]:
    spec = obj.get("spec") or {}
    lines = header(obj)
    lines.append(_field("Selector", ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))))
    lines += [_field("Type", spec.get("type", "ClusterIP")), _field("IP", spec.get("clusterIP"))]
    for port in spec.get("ports") or []:
        lines.append(_field("Port", f"{port.get('name') or '<unset>'}  {port.get('port')}/{port.get('protocol', 'TCP')}"))
        lines.append(_field("TargetPort", f"{port.get('targetPort', port.get('port'))}/{port.get('protocol', 'TCP')}"))
        if port.get("nodePort"):
            lines.append(_field("NodePort", f"{port.get('name') or '<unset>'}  {port['nodePort']}/{port.get('protocol', 'TCP')}"))
    return lines


def describe_node(obj: dict) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = header(obj)
    lines.append(_field("Unschedulable", str(bool(spec.get("unschedulable"))).lower()))
    lines += ["Conditions:", "  Type     Status  Reason"]
    lines += [f"  {c.get('type', ''):<9}{c.get('status', ''):<8}{c.get('reason', '')}" for c in status.get("conditions") or []]
    lines += ["Addresses:"] + [f"  {a.get('type')}:  {a.get('address')}" for a in status.get("addresses") or []]
    lines += ["Capacity:"] + [f"  {k}:  {v}" for k, v in sorted((status.get("capacity") or {}).items())]
    info = status.get("nodeInfo") or {}
    lines += ["System Info:"] + [f"  {k}:  {v}" for k, v in sorted(info.items())]
    return lines


def describe_generic(obj: dict) -> list[str]:
    from kubectl.printers import dump_yaml

    lines = header(obj)
    for section in ("spec", "status", "data", "subsets"):
        if obj.get(section):
            lines.append(f"{section.capitalize()}:")
            lines += ["  " + line for line in dump_yaml(obj[section]).splitlines()]
    return lines


DESCRIBERS: dict[str, Callable[[dict], list[str]]] = {
    "Pod": describe_pod, "Deployment": describe_workload, "ReplicaSet": describe_workload,
    "Service": describe_service, "Node": describe_node,
}


def events_section(events: list[dict], now: datetime.datetime) -> list[str]:
    """kubectl's Events table (Type, Reason, Age, From, Message), oldest first; ``<none>`` if empty."""
    if not events:
        return ["Events:  <none>"]
    rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        rows.append([event.get("type", ""), event.get("reason", ""), _event_age(event, now),
                     (event.get("source") or {}).get("component") or event.get("reportingController", ""),
                     (event.get("message") or "").strip()])
    from kubectl.printers import align

    return ["Events:"] + ["  " + line for line in align(rows).splitlines()]


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


def describe(obj: dict, events: list[dict], now: Optional[datetime.datetime] = None) -> str:
    """The full page for one object."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    lines = DESCRIBERS.get(obj.get("kind", ""), describe_generic)(obj)
    return "\n".join(lines + events_section(events, moment)) + "\n"


def event_selector(obj: dict) -> str:
    """The field selector finding an object's Events."""
    meta = obj.get("metadata") or {}
    terms = [f"involvedObject.name={meta.get('name', '')}", f"involvedObject.kind={obj.get('kind', '')}"]
    if meta.get("namespace"):
        terms.append(f"involvedObject.namespace={meta['namespace']}")
    if meta.get("uid"):
        terms.append(f"involvedObject.uid={meta['uid']}")
    return ",".join(terms)
