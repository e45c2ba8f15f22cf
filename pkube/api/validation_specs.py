"""Semantic checks of each kind's content (what JSON schema cannot say), as Kubernetes'
pkg/apis/*/validation does on create and update.

Every check is a pure function `(obj or part, field path) -> list[Cause]`. The inputs have
passed schema type checks already, but checks stay defensive: a wrong shape yields no crash.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from pkube.api import causes, names
from pkube.api.quantity import QuantityError, parse_quantity
from pkube.api.selectors import SelectorError, label_selector_from_dict

PORT_MAX = 65535
PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
TOLERATION_OPERATORS = ("Equal", "Exists")
STRATEGY_TYPES = ("Recreate", "RollingUpdate")
CONFIG_MAX_BYTES = 1024 * 1024
_ENV_NAME_FMT = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', "
    "or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
    f"'MyEnvName1', regex used for validation is '{_ENV_NAME_FMT}')"
)
_CONFIG_KEY_FMT = r"[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY_FMT}')"
)
_IANA_SVC_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_PERCENT_RE = re.compile(r"[0-9]+%")


# --- small shape helpers -----------------------------------------------------------------------

def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value) -> list:
    return value if isinstance(value, list) else []


def dict_items(value, path: str):
    """(index, item, item path) for the dict items of a list."""
    for index, item in enumerate(as_list(value)):
        if isinstance(item, dict):
            yield index, item, f"{path}[{index}]"


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def in_range(field: str, value, low: int, high: int) -> list:
    if is_int(value) and not low <= value <= high:
        return [causes.invalid(field, value, f"must be between {low} and {high}, inclusive")]
    return []


def non_negative(field: str, value) -> list:
    if is_int(value) and value < 0:
        return [causes.invalid(field, value, "must be greater than or equal to 0")]
    return []


def one_of(field: str, value, supported, allow_missing: bool = True) -> list:
    if value is None and allow_missing:
        return []
    if value not in supported:
        return [causes.not_supported(field, value, supported)]
    return []


def syntax(field: str, value, check) -> list:
    """Run a names.* check; each problem becomes one Invalid cause."""
    if not isinstance(value, str):
        return []
    return [causes.invalid(field, value, problem) for problem in check(value)]


def label_map(field: str, labels) -> list:
    """Label keys and values (metadata.labels, selectors, nodeSelector)."""
    found = []
    for key, value in as_dict(labels).items():
        found += syntax(field, key, names.qualified_name)
        found += syntax(field, value, names.label_value) if isinstance(value, str) else []
    return found


def iana_service_name(field: str, value) -> list:
    """A named port: at most 15 lowercase alphanumerics or '-', with a letter, no '--'."""
    problems = []
    if len(value) > 15:
        problems.append("must be no more than 15 characters")
    if not _IANA_SVC_NAME_RE.fullmatch(value):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        problems.append("must contain at least one letter (a-z)")
    return [causes.invalid(field, value, problem) for problem in problems]


# --- pods --------------------------------------------------------------------------------------

def pod_spec(spec, path: str, in_template: bool = False) -> list:
    """A PodSpec: containers, volumes, ports, policies, tolerations."""
    spec = as_dict(spec)
    found = volumes(spec.get("volumes"), f"{path}.volumes")
    volume_names = {v.get("name") for _, v, _ in dict_items(spec.get("volumes"), "")}
    if not as_list(spec.get("containers")):
        found.append(causes.required(f"{path}.containers"))
    found += containers(spec, path, volume_names)
    restart_choices = ("Always",) if in_template else RESTART_POLICIES
    found += one_of(f"{path}.restartPolicy", spec.get("restartPolicy"), restart_choices)
    found += one_of(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    found += non_negative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    found += in_range(f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"), 1, 2**31 - 1)
    found += label_map(f"{path}.nodeSelector", spec.get("nodeSelector"))
    for field in ("hostname", "subdomain"):
        found += syntax(f"{path}.{field}", spec.get(field) or None, names.dns1123_label)
    for field in ("serviceAccountName", "nodeName"):
        found += syntax(f"{path}.{field}", spec.get(field) or None, names.dns1123_subdomain)
    for index, toleration, where in dict_items(spec.get("tolerations"), f"{path}.tolerations"):
        found += _toleration(toleration, where)
    return found


def containers(spec: dict, path: str, volume_names: set) -> list:
    """Every container list of a pod: names unique across them, each container's content."""
    found, seen_names, seen_ports = [], set(), set()
    for field in ("initContainers", "containers"):
        for _, container, where in dict_items(spec.get(field), f"{path}.{field}"):
            name = container.get("name")
            if isinstance(name, str) and name in seen_names:
                found.append(causes.duplicate(f"{where}.name", name))
            seen_names.add(name)
            found += _container(container, where, volume_names, seen_ports,
                                bool(spec.get("hostNetwork")))
    return found


def _container(container: dict, path: str, volume_names: set, seen_ports: set,
               host_network: bool) -> list:
    name = container.get("name")
    found = [causes.required(f"{path}.name")] if not name else syntax(f"{path}.name", name, names.dns1123_label)
    image = container.get("image")
    if not isinstance(image, str) or not image.strip():
        found.append(causes.required(f"{path}.image"))
    found += _container_ports(container.get("ports"), f"{path}.ports", seen_ports, host_network)
    found += _env(container.get("env"), f"{path}.env")
    found += _volume_mounts(container.get("volumeMounts"), f"{path}.volumeMounts", volume_names)
    found += resources(container.get("resources"), f"{path}.resources")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if container.get(probe) is not None:
            found += _probe(container.get(probe), f"{path}.{probe}")
    found += one_of(f"{path}.imagePullPolicy", container.get("imagePullPolicy"),
                    ("Always", "IfNotPresent", "Never"))
    found += one_of(f"{path}.terminationMessagePolicy", container.get("terminationMessagePolicy"),
                    ("FallbackToLogsOnError", "File"))
    return found


def _container_ports(ports, path: str, seen_names: set, host_network: bool) -> list:
    found = []
    for _, port, where in dict_items(ports, path):
        found += in_range(f"{where}.containerPort", port.get("containerPort"), 1, PORT_MAX)
        if port.get("hostPort"):
            found += in_range(f"{where}.hostPort", port.get("hostPort"), 1, PORT_MAX)
            if host_network and port.get("hostPort") != port.get("containerPort"):
                found.append(causes.invalid(f"{where}.containerPort", port.get("containerPort"),
                                            "must match `hostPort` when `hostNetwork` is true"))
        found += one_of(f"{where}.protocol", port.get("protocol"), PROTOCOLS)
        port_name = port.get("name")
        if isinstance(port_name, str) and port_name:
            found += iana_service_name(f"{where}.name", port_name)
            if port_name in seen_names:
                found.append(causes.duplicate(f"{where}.name", port_name))
            seen_names.add(port_name)
    return found


def _env(env, path: str) -> list:
    found = []
    for _, variable, where in dict_items(env, path):
        name = variable.get("name")
        if not name:
            found.append(causes.required(f"{where}.name"))
        elif isinstance(name, str) and not re.fullmatch(_ENV_NAME_FMT, name):
            found.append(causes.invalid(f"{where}.name", name, _ENV_NAME_MSG))
        if "value" in variable and variable.get("valueFrom"):
            found.append(causes.invalid(f"{where}.valueFrom", "",
                                        "may not be specified when `value` is not empty"))
    return found


def _volume_mounts(mounts, path: str, volume_names: set) -> list:
    found, seen_paths = [], set()
    for _, mount, where in dict_items(mounts, path):
        name, mount_path = mount.get("name"), mount.get("mountPath")
        if not name:
            found.append(causes.required(f"{where}.name"))
        elif name not in volume_names:
            found.append(causes.not_found(f"{where}.name", name))
        if not mount_path:
            found.append(causes.required(f"{where}.mountPath"))
        elif mount_path in seen_paths:
            found.append(causes.invalid(f"{where}.mountPath", mount_path, "must be unique"))
        seen_paths.add(mount_path)
    return found


def resources(requirements, path: str) -> list:
    """Quantities parse, are non-negative, and requests do not exceed limits."""
    requirements = as_dict(requirements)
    parsed, found = {}, []
    for section in ("limits", "requests"):
        for name, text in as_dict(requirements.get(section)).items():
            where = f"{path}.{section}[{name}]"
            if not _resource_name_ok(name):
                found.append(causes.invalid(where, name, "must be a standard resource type or fully qualified"))
                continue
            try:
                parsed[section, name] = parse_quantity(text)
            except QuantityError as error:
                found.append(causes.invalid(where, text, str(error)))
                continue
            if parsed[section, name] < 0:
                found.append(causes.invalid(where, text, "must be greater than or equal to 0"))
    for (section, name), value in parsed.items():
        limit = parsed.get(("limits", name))
        if section == "requests" and limit is not None and value > limit:
            found.append(causes.invalid(f"{path}.requests", requirements["requests"][name],
                                        f"must be less than or equal to {name} limit of "
                                        f"{requirements['limits'][name]}"))
    return found


STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _resource_name_ok(name: str) -> bool:
    """cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-qualified name."""
    if name in STANDARD_RESOURCES or name.startswith("hugepages-"):
        return True
    return "/" in name and not names.qualified_name(name)


def _probe(probe, path: str) -> list:
    """Exactly one handler; periods and thresholds positive."""
    probe = as_dict(probe)
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        return [causes.required(path, "must specify a handler type")]
    found = [causes.forbidden(f"{path}.{h}", "may not specify more than 1 handler type") for h in handlers[1:]]
    for field in ("periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
        value = probe.get(field)
        if is_int(value) and value < 1:
            found.append(causes.invalid(f"{path}.{field}", value, "must be greater than or equal to 1"))
    found += non_negative(f"{path}.initialDelaySeconds", probe.get("initialDelaySeconds"))
    port = as_dict(probe.get("httpGet") or probe.get("tcpSocket")).get("port")
    found += _target_port(port, f"{path}.{handlers[0]}.port") if port is not None else []
    return found


def volumes(volume_list, path: str) -> list:
    found, seen = [], set()
    for _, volume, where in dict_items(volume_list, path):
        name = volume.get("name")
        if not name:
            found.append(causes.required(f"{where}.name"))
            continue
        found += syntax(f"{where}.name", name, names.dns1123_label)
        if name in seen:
            found.append(causes.duplicate(f"{where}.name", name))
        seen.add(name)
        sources = [key for key in volume if key != "name"]
        if len(sources) > 1:
            found.append(causes.forbidden(f"{where}.{sources[1]}", "may not specify more than 1 volume type"))
    return found


def _toleration(toleration: dict, path: str) -> list:
    key, operator = toleration.get("key"), toleration.get("operator") or "Equal"
    found = syntax(f"{path}.key", key or None, names.qualified_name)
    found += one_of(f"{path}.operator", operator, TOLERATION_OPERATORS)
    if not key and operator != "Exists":
        found.append(causes.invalid(f"{path}.operator", operator,
                                    "operator must be Exists when `key` is empty, which means "
                                    "\"match all values and all keys\""))
    if operator == "Exists" and toleration.get("value"):
        found.append(causes.invalid(f"{path}.operator", toleration.get("value"),
                                    "value must be empty when `operator` is 'Exists'"))
    effect = toleration.get("effect") or None
    found += one_of(f"{path}.effect", effect, TAINT_EFFECTS)
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        found.append(causes.invalid(f"{path}.effect", effect,
                                    "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return found


def pod(obj: dict) -> list:
    return pod_spec(obj.get("spec"), "spec")


# --- workloads ---------------------------------------------------------------------------------

def _workload(obj: dict, kind_word: str) -> list:
    """What Deployments and ReplicaSets share: replicas, selector, template."""
    spec = as_dict(obj.get("spec"))
    found = non_negative("spec.replicas", spec.get("replicas"))
    found += non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
    template = as_dict(spec.get("template"))
    template_labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    found += label_map("spec.template.metadata.labels", template_labels)
    found += _selector_matches_template(spec.get("selector"), template_labels, kind_word)
    if not template:
        found.append(causes.required("spec.template"))
    else:
        found += pod_spec(template.get("spec"), "spec.template.spec", in_template=True)
    return found


def _selector_matches_template(selector, template_labels: dict, kind_word: str) -> list:
    if selector is None:
        return [causes.required("spec.selector")]
    try:
        parsed = label_selector_from_dict(selector)
    except SelectorError as error:
        return [causes.invalid("spec.selector", selector, str(error))]
    if parsed.empty:
        return [causes.invalid("spec.selector", selector, f"empty selector is invalid for {kind_word}")]
    if not parsed.matches(template_labels):
        return [causes.invalid("spec.template.metadata.labels", template_labels,
                               "`selector` does not match template `labels`")]
    return []


def deployment(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = _workload(obj, "deployment")
    found += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    found += _strategy(as_dict(spec.get("strategy")), "spec.strategy")
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if is_int(deadline) and is_int(min_ready) and deadline <= min_ready:
        found.append(causes.invalid("spec.progressDeadlineSeconds", deadline,
                                    "must be greater than minReadySeconds"))
    return found


def _strategy(strategy: dict, path: str) -> list:
    kind = strategy.get("type")
    found = one_of(f"{path}.type", kind, STRATEGY_TYPES)
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate" and rolling is not None:
        return found + [causes.forbidden(f"{path}.rollingUpdate",
                                         "may not be specified when strategy `type` is 'Recreate'")]
    rolling = as_dict(rolling)
    surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
    found += _int_or_percent(f"{path}.rollingUpdate.maxSurge", surge)
    found += _int_or_percent(f"{path}.rollingUpdate.maxUnavailable", unavailable)
    if _is_zero(surge) and _is_zero(unavailable):
        found.append(causes.invalid(f"{path}.rollingUpdate.maxUnavailable", unavailable,
                                    "may not be 0 when `maxSurge` is 0"))
    if isinstance(unavailable, str) and _PERCENT_RE.fullmatch(unavailable) and int(unavailable[:-1]) > 100:
        found.append(causes.invalid(f"{path}.rollingUpdate.maxUnavailable", unavailable,
                                    "must not be greater than 100%"))
    return found


def _int_or_percent(field: str, value) -> list:
    if value is None:
        return []
    if isinstance(value, str) and not _PERCENT_RE.fullmatch(value):
        return [causes.invalid(field, value, "a valid percent string must be a numeric string "
                                             "followed by an ending '%' (e.g. '1%',  or '93%', regex "
                                             "used for validation is '[0-9]+%')")]
    return non_negative(field, value)


def _is_zero(value) -> bool:
    return value in (0, "0%")


def replica_set(obj: dict) -> list:
    return _workload(obj, "replicaset")


# --- services and endpoints --------------------------------------------------------------------

def service(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    kind = spec.get("type") or "ClusterIP"
    found = one_of("spec.type", kind, SERVICE_TYPES)
    found += one_of("spec.sessionAffinity", spec.get("sessionAffinity"), SESSION_AFFINITIES)
    found += one_of("spec.internalTrafficPolicy", spec.get("internalTrafficPolicy"), TRAFFIC_POLICIES)
    found += one_of("spec.externalTrafficPolicy", spec.get("externalTrafficPolicy"), TRAFFIC_POLICIES)
    found += label_map("spec.selector", spec.get("selector"))
    found += _cluster_ip(spec.get("clusterIP"))
    if kind == "ExternalName":
        external = spec.get("externalName")
        if not external:
            found.append(causes.required("spec.externalName"))
        found += syntax("spec.externalName", external.rstrip(".") if isinstance(external, str) and external else None,
                        names.dns1123_subdomain)
    elif not as_list(spec.get("ports")) and spec.get("clusterIP") != "None":
        found.append(causes.required("spec.ports"))
    found += _service_ports(as_list(spec.get("ports")), kind)
    return found


def _cluster_ip(cluster_ip) -> list:
    if not isinstance(cluster_ip, str) or cluster_ip in ("", "None"):
        return []
    try:
        ipaddress.ip_address(cluster_ip)
    except ValueError:
        return [causes.invalid("spec.clusterIP", cluster_ip, "must be a valid IP address, (e.g. 10.9.8.7 "
                                                             "or 2001:db8::ffff) or \"None\"")]
    return []


def _service_ports(ports: list, kind: str) -> list:
    found, seen_names, seen_ports = [], set(), set()
    for _, port, where in dict_items(ports, "spec.ports"):
        name = port.get("name")
        if len(ports) > 1 and not name:
            found.append(causes.required(f"{where}.name"))
        elif name:
            found += syntax(f"{where}.name", name, names.dns1123_label)
            if name in seen_names:
                found.append(causes.duplicate(f"{where}.name", name))
            seen_names.add(name)
        found += in_range(f"{where}.port", port.get("port"), 1, PORT_MAX)
        found += one_of(f"{where}.protocol", port.get("protocol"), PROTOCOLS)
        found += _target_port(port.get("targetPort"), f"{where}.targetPort")
        found += _node_port(port.get("nodePort"), f"{where}.nodePort", kind)
        identity = (port.get("port"), port.get("protocol") or "TCP")
        if identity in seen_ports:
            found.append(causes.duplicate(where, {"port": identity[0], "protocol": identity[1]}))
        seen_ports.add(identity)
    return found


def _target_port(target, field: str) -> list:
    if isinstance(target, str):
        return iana_service_name(field, target) if target else []
    return in_range(field, target, 1, PORT_MAX)


def _node_port(node_port, field: str, kind: str) -> list:
    if not node_port:
        return []
    if kind not in ("NodePort", "LoadBalancer"):
        return [causes.forbidden(field, f"may not be used when `type` is '{kind}'")]
    return in_range(field, node_port, 1, PORT_MAX)


def endpoints(obj: dict) -> list:
    found = []
    for _, subset, where in dict_items(obj.get("subsets"), "subsets"):
        for field in ("addresses", "notReadyAddresses"):
            for _, address, at in dict_items(subset.get(field), f"{where}.{field}"):
                found += _ip(f"{at}.ip", address.get("ip"))
        for _, port, at in dict_items(subset.get("ports"), f"{where}.ports"):
            found += in_range(f"{at}.port", port.get("port"), 1, PORT_MAX)
            found += one_of(f"{at}.protocol", port.get("protocol"), PROTOCOLS)
    return found


def endpoint_slice(obj: dict) -> list:
    found = one_of("addressType", obj.get("addressType"), ("FQDN", "IPv4", "IPv6"), allow_missing=False)
    for _, endpoint, where in dict_items(obj.get("endpoints"), "endpoints"):
        if not as_list(endpoint.get("addresses")):
            found.append(causes.required(f"{where}.addresses"))
    for _, port, where in dict_items(obj.get("ports"), "ports"):
        if port.get("port") is not None:
            found += in_range(f"{where}.port", port.get("port"), 1, PORT_MAX)
        found += one_of(f"{where}.protocol", port.get("protocol"), PROTOCOLS)
    return found


def _ip(field: str, value) -> list:
    if not value:
        return [causes.required(field)]
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return [causes.invalid(field, value, "must be a valid IP address")]
    return []


# --- config, nodes -----------------------------------------------------------------------------

def _config_keys(field: str, data) -> list:
    found = []
    for key in as_dict(data):
        if len(key) > names.DNS1123_SUBDOMAIN_MAX:
            found.append(causes.invalid(field, key, f"must be no more than {names.DNS1123_SUBDOMAIN_MAX} characters"))
        if not re.fullmatch(_CONFIG_KEY_FMT, key) or key in (".", ".."):
            found.append(causes.invalid(field, key, _CONFIG_KEY_MSG))
    return found


def _base64_values(field: str, data) -> tuple[list, int]:
    """Causes for values that are not base64, and the decoded total size."""
    found, total = [], 0
    for key, value in as_dict(data).items():
        try:
            total += len(base64.b64decode(value or "", validate=True))
        except (binascii.Error, ValueError, TypeError):
            found.append(causes.invalid(f"{field}[{key}]", "<secret contents redacted>",
                                        "illegal base64 data"))
    return found, total


def secret(obj: dict) -> list:
    found = _config_keys("data", obj.get("data"))
    bad, total = _base64_values("data", obj.get("data"))
    found += bad
    if total > CONFIG_MAX_BYTES:
        found.append(causes.too_long("data", CONFIG_MAX_BYTES))
    data = as_dict(obj.get("data"))
    required_keys = {"kubernetes.io/tls": ("tls.crt", "tls.key"),
                     "kubernetes.io/dockerconfigjson": (".dockerconfigjson",)}.get(obj.get("type"), ())
    for key in required_keys:
        if key not in data:
            found.append(causes.required(f"data[{key}]"))
    return found


def config_map(obj: dict) -> list:
    data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
    found = _config_keys("data", data) + _config_keys("binaryData", binary)
    for key in set(data) & set(binary):
        found.append(causes.invalid("data", key, "duplicate of key present in binaryData"))
    bad, total = _base64_values("binaryData", binary)
    total += sum(len(v.encode()) for v in data.values() if isinstance(v, str))
    if total > CONFIG_MAX_BYTES:
        found.append(causes.too_long("", CONFIG_MAX_BYTES))
    return found + bad


def node(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = []
    for cidr_index, cidr in enumerate([spec.get("podCIDR")] + as_list(spec.get("podCIDRs"))):
        if cidr:
            try:
                ipaddress.ip_network(cidr)
            except (ValueError, TypeError):
                field = "spec.podCIDR" if cidr_index == 0 else f"spec.podCIDRs[{cidr_index - 1}]"
                found.append(causes.invalid(field, cidr, "must be a valid CIDR"))
    for _, taint, where in dict_items(spec.get("taints"), "spec.taints"):
        found += [causes.required(f"{where}.key")] if not taint.get("key") else []
        found += syntax(f"{where}.key", taint.get("key") or None, names.qualified_name)
        found += one_of(f"{where}.effect", taint.get("effect"), TAINT_EFFECTS, allow_missing=False)
    return found


def scale(obj: dict) -> list:
    return non_negative("spec.replicas", as_dict(obj.get("spec")).get("replicas"))


def lease(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))
    duration = spec.get("leaseDurationSeconds")
    if is_int(duration) and duration <= 0:
        found.append(causes.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    return found


BY_KIND = {
    "Scale": scale,
    "Lease": lease,
    "Pod": pod,
    "Deployment": deployment,
    "ReplicaSet": replica_set,
    "DaemonSet": lambda obj: _apps().daemon_set(obj),
    "StatefulSet": lambda obj: _apps().stateful_set(obj),
    "ControllerRevision": lambda obj: _apps().controller_revision(obj),
    "Service": service,
    "Endpoints": endpoints,
    "EndpointSlice": endpoint_slice,
    "Secret": secret,
    "ConfigMap": config_map,
    "Node": node,
    "PodDisruptionBudget": lambda obj: _policy().pod_disruption_budget(obj),
    "HorizontalPodAutoscaler": lambda obj: _policy().horizontal_pod_autoscaler(obj),
    "PersistentVolume": lambda obj: _storage().persistent_volume(obj),
    "PersistentVolumeClaim": lambda obj: _storage().persistent_volume_claim(obj),
    "StorageClass": lambda obj: _storage().storage_class(obj),
    "LimitRange": lambda obj: _limitrange().limit_range(obj),
    "Ingress": lambda obj: _networking().ingress(obj),
    "IngressClass": lambda obj: _networking().ingress_class(obj),
    "NetworkPolicy": lambda obj: _networking().network_policy(obj),
    "Job": lambda obj: _batch().job(obj),
    "CronJob": lambda obj: _batch().cron_job(obj),
    "ReplicationController": lambda obj: _batch().replication_controller(obj),
}


def _apps():
    """api.validation_apps (imported late: it builds on this module)."""
    from pkube.api import validation_apps
    return validation_apps


def _batch():
    """api.validation_batch (imported late: it builds on this module)."""
    from pkube.api import validation_batch
    return validation_batch


def _storage():
    """api.validation_storage (imported late: it builds on this module)."""
    from pkube.api import validation_storage
    return validation_storage


def _limitrange():
    """api.validation_limitrange (imported late: it builds on this module)."""
    from pkube.api import validation_limitrange
    return validation_limitrange


def _networking():
    """api.validation_networking (imported late: it builds on this module)."""
    from pkube.api import validation_networking
    return validation_networking


def _policy():
    """api.validation_policy (imported late: it builds on this module)."""
    from pkube.api import validation_policy
    return validation_policy
