"""The downward API: values of a pod and its containers as the pod's own containers see
them, in env variables (fieldRef, resourceFieldRef) and downwardAPI volumes.

Pure functions of the pod; they raise `DownwardAPIError` (a ValueError) with Kubernetes'
message, which the caller wraps into the error its context shows (ConfigError for env,
VolumeError for volumes).
"""

from __future__ import annotations

import re

from pkube.api.quantity import QuantityError, cpu_millicores, memory_bytes, parse_quantity

# k8s.io/apimachinery validation.IsQualifiedName: [prefix/]name
_QUALIFIED_NAME = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t", "\v": "\\v"}
RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage",
             "requests.cpu", "requests.memory", "requests.ephemeral-storage")


class DownwardAPIError(ValueError):
    """A field or resource reference that cannot be resolved."""


def go_quote(text: str) -> str:
    """Go's strconv.Quote (what %q prints): double quotes, Go escapes for the rest."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def format_map(values: dict[str, str]) -> str:
    """Labels or annotations as a downwardAPI file shows them: `key="value"` lines, sorted,
    no trailing newline (Kubernetes' fieldpath.FormatMap)."""
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values))


def _split_subscript(field_path: str) -> tuple[str, str] | None:
    """`metadata.labels['app']` -> ("metadata.labels", "app"); None without a subscript."""
    if not field_path.endswith("']"):
        return None
    path, sep, key = field_path[:-2].partition("['")
    return (path, key) if sep and path else None


def metadata_field(pod: dict, field_path: str) -> str:
    """The value of a metadata field path (fieldpath.ExtractFieldPathAsString): name,
    namespace, uid, labels, annotations, labels['k'], annotations['k']."""
    meta = pod.get("metadata") or {}
    subscripted = _split_subscript(field_path)
    if subscripted:
        path, key = subscripted
        if path not in ("metadata.labels", "metadata.annotations"):
            raise DownwardAPIError(f"fieldPath {field_path!r} does not support subscript")
        if not _QUALIFIED_NAME.fullmatch(key.lower()) or len(key.rpartition("/")[2]) > 63:
            raise DownwardAPIError(f"invalid key subscript in {field_path}: {key!r} is not a qualified name")
        return (meta.get(path.split(".")[1]) or {}).get(key, "")
    if field_path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(field_path.split(".")[1]) or {})
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return meta.get(field_path.split(".")[1]) or ""
    raise DownwardAPIError(f"unsupported fieldPath: {field_path}")


def pod_field(pod: dict, field_path: str, pod_ips: list[str] | None = None,
              host_ips: list[str] | None = None) -> str:
    """A fieldRef of an env variable (the kubelet's podFieldSelectorRuntimeValue): the
    metadata fields plus spec.nodeName, spec.serviceAccountName, status.hostIP(s),
    status.podIP(s). `pod_ips`/`host_ips` override the pod's status (the kubelet knows the
    sandbox's address before the status says so)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if pod_ips is None:
        pod_ips = [p["ip"] for p in status.get("podIPs") or [] if p.get("ip")] or \
                  ([status["podIP"]] if status.get("podIP") else [])
    if host_ips is None:
        host_ips = [h["ip"] for h in status.get("hostIPs") or [] if h.get("ip")] or \
                   ([status["hostIP"]] if status.get("hostIP") else [])
    values = {
        "spec.nodeName": lambda: spec.get("nodeName") or "",
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName") or "",
        "status.podIP": lambda: pod_ips[0] if pod_ips else "",
        "status.podIPs": lambda: ",".join(pod_ips),
        "status.hostIP": lambda: host_ips[0] if host_ips else "",
        "status.hostIPs": lambda: ",".join(host_ips),
    }
    if field_path in values:
        return values[field_path]()
    return metadata_field(pod, field_path)


def resource_value(ref: dict, container: dict, allocatable: dict | None = None) -> str:
    """A resourceFieldRef's value for `container` (ExtractContainerResourceValue): limits
    unset fall back to the node's `allocatable`; the value is divided by `divisor` (default
    1) and rounded up, so cpu is whole cores unless the divisor says otherwise ("1m")."""
    resource = ref.get("resource") or ""
    if resource not in RESOURCES:
        raise DownwardAPIError(f"unsupported container resource : {resource}")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    values = dict(resources.get(kind) or {})
    if kind == "limits":
        for key, quantity in (allocatable or {}).items():
            values.setdefault(key, quantity)
    try:
        divisor = ref.get("divisor") or "1"
        if parse_quantity(divisor) == 0:
            divisor = "1"
        if name == "cpu":
            return str(_ceil_div(cpu_millicores(values.get(name, 0)), cpu_millicores(divisor)))
        return str(_ceil_div(memory_bytes(values.get(name, 0)), memory_bytes(divisor)))
    except QuantityError as e:
        raise DownwardAPIError(f"resource {resource}: {e}") from None


def _ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


def find_container(pod: dict, name: str) -> dict:
    """The container (or init container) `name` of the pod; raises DownwardAPIError."""
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if container.get("name") == name:
            return container
    raise DownwardAPIError(f"container {name} not found")
