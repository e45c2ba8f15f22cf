"""A container's environment, by Kubernetes' rules (kubelet makeEnvironmentVariables).

Precedence, lowest first: the service variables, `envFrom` (ConfigMaps and Secrets, in
order, with their prefix), then `env` in order (a later entry wins). An `env` value expands
`$(VAR)` references to variables defined before it (or service variables); `$$` is a
literal `$` and an unknown reference stays as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from pkube.kubelet.downwardapi import DownwardAPIError, find_container, pod_field, resource_value
from pkube.kubelet.errors import ConfigError
from pkube.kubelet.objectsource import ObjectDataError, ObjectSource, PodObjects, not_found

# k8s.io/apimachinery validation.IsEnvVarName
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def is_env_var_name(name: str) -> bool:
    return bool(_ENV_VAR_NAME.fullmatch(name))


def expand(text: str, lookup: Callable[[str], str]) -> str:
    """Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` is
    replaced by lookup(NAME); `$$` is `$`; a `$` before anything else, or an unclosed
    `$(`, is kept as written."""
    out, checkpoint, cursor = [], 0, 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            advance = 1
            if following == "$":
                out.append("$")
            elif following == "(" and ")" in text[cursor + 2:]:
                end = text.index(")", cursor + 2)
                out.append(lookup(text[cursor + 2:end]))
                advance = end - cursor
            else:
                out.append("$" + following)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def lookup_in(*scopes: dict[str, str]) -> Callable[[str], str]:
    """A lookup over `scopes` in order that leaves an unknown reference as `$(NAME)`."""
    def lookup(name: str) -> str:
        for scope in scopes:
            if name in scope:
                return scope[name]
        return f"$({name})"
    return lookup


async def container_env(pod: dict, container: dict, source: ObjectSource,
                        service_env: dict[str, str] | None = None, *,
                        allocatable: dict | None = None, pod_ips: list[str] | None = None,
                        host_ips: list[str] | None = None) -> dict[str, str]:
    """The environment of `container` (a dict in the order it is built; service variables
    that nothing overrode come first). `allocatable` is the node's (the value of a
    resourceFieldRef limit the container does not set); `pod_ips`/`host_ips` the pod's and
    node's addresses when the pod's status does not have them yet.

    Raises ConfigError (a missing Secret, ConfigMap or key that is not optional, a bad
    fieldRef): Kubernetes' CreateContainerConfigError, retried on the next sync. The
    source's own failures propagate."""
    objects = PodObjects(source, (pod.get("metadata") or {}).get("namespace") or "default")
    origin = _Origin(pod, container, objects, allocatable, pod_ips, host_ips)
    service_env = dict(service_env or {})
    env: dict[str, str] = {}
    for env_from in container.get("envFrom") or []:
        env.update(await _env_from(objects, env_from))
    for var in container.get("env") or []:
        value = await _env_value(origin, var, lookup_in(env, service_env))
        if value is not None:
            env[var["name"]] = value
    return {**{k: v for k, v in service_env.items() if k not in env}, **env}


async def _env_from(objects: PodObjects, env_from: dict) -> dict[str, str]:
    """The variables of one envFrom entry; keys that are not valid names are skipped (as
    Kubernetes does, which also reports them in an InvalidEnvironmentVariableNames event)."""
    kind, ref = ("ConfigMap", env_from["configMapRef"]) if env_from.get("configMapRef") else \
                ("Secret", env_from.get("secretRef"))
    if not ref:
        raise ConfigError("envFrom: needs a configMapRef or a secretRef")
    values = await _object_values(objects, kind, ref["name"])
    if values is None:
        if ref.get("optional"):
            return {}
        raise ConfigError(not_found(kind, ref["name"]))
    prefix = env_from.get("prefix") or ""
    return {prefix + key: value for key, value in values.items() if is_env_var_name(prefix + key)}


@dataclass
class _Origin:
    """Where the `valueFrom` of one container's variables are read."""

    pod: dict
    container: dict
    objects: PodObjects
    allocatable: dict | None
    pod_ips: list[str] | None
    host_ips: list[str] | None


async def _env_value(origin: _Origin, var: dict, lookup: Callable[[str], str]) -> str | None:
    """The value of one `env` entry; None when it comes from an optional reference that
    does not resolve (the variable is then not set)."""
    source = var.get("valueFrom")
    if var.get("value") or not source:
        return expand(var.get("value") or "", lookup)
    try:
        if source.get("fieldRef"):
            return pod_field(origin.pod, source["fieldRef"].get("fieldPath") or "", origin.pod_ips, origin.host_ips)
        if source.get("resourceFieldRef"):
            ref = source["resourceFieldRef"]
            target = find_container(origin.pod, ref["containerName"]) if ref.get("containerName") else origin.container
            return resource_value(ref, target, origin.allocatable)
    except DownwardAPIError as e:
        raise ConfigError(str(e)) from None
    for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        if source.get(field):
            return await _key_value(origin.objects, kind, source[field])
    raise ConfigError(f"env variable {var['name']}: valueFrom names no source")


async def _key_value(objects: PodObjects, kind: str, ref: dict) -> str | None:
    values = await _object_values(objects, kind, ref["name"])
    if values is None or ref["key"] not in values:
        if ref.get("optional"):
            return None
        if values is None:
            raise ConfigError(not_found(kind, ref["name"]))
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {objects.namespace}/{ref['name']}")
    return values[ref["key"]]


async def _object_values(objects: PodObjects, kind: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's `data` or a Secret's decoded `data` as strings; None when it does not
    exist."""
    if kind == "ConfigMap":
        config_map = await objects.get(kind, name)
        return None if config_map is None else dict(config_map.get("data") or {})
    try:
        data = await objects.data(kind, name)
    except ObjectDataError as e:
        raise ConfigError(str(e)) from None
    return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}
