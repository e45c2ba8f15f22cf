"""What goes into a Secret, ConfigMap, downwardAPI or projected volume: its payload
(relative path -> FileProjection), as Kubernetes' volume plugins make it (MakePayload,
CollectData). Written by kubelet.atomicwriter.

Every function raises `ContentError` with the message Kubernetes shows after
`MountVolume.SetUp failed for volume "x" : `; the source's own failures propagate.
"""

from __future__ import annotations

from pkube.kubelet.atomicwriter import FileProjection
from pkube.kubelet.downwardapi import DownwardAPIError, find_container, metadata_field, resource_value
from pkube.kubelet.objectsource import ObjectDataError, PodObjects, not_found
from pkube.kubelet.tokens import TokenError

DEFAULT_MODE = 0o644


class ContentError(ValueError):
    """The content of a volume cannot be made (missing object or key, bad reference)."""


def _mode(value, default: int) -> int:
    return default if value is None else int(value) & 0o777


def make_payload(items: list[dict] | None, data: dict[str, bytes], default_mode: int,
                 optional: bool, missing_key: str) -> dict[str, FileProjection]:
    """Every key as a file named after it, or only the `items` (key -> path, mode). A
    missing item key is an error (`missing_key` % key) unless `optional`."""
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in data.items()}
    payload = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ContentError(missing_key % item["key"])
        payload[item["path"]] = FileProjection(data[item["key"]], _mode(item.get("mode"), default_mode))
    return payload


async def _object_payload(objects: PodObjects, kind: str, name: str, source: dict, default_mode: int,
                          missing_key: str) -> dict[str, FileProjection]:
    optional = bool(source.get("optional"))
    try:
        data = await objects.data(kind, name)
    except ObjectDataError as e:
        raise ContentError(str(e)) from None
    if data is None:
        if not optional:
            raise ContentError(not_found(kind, name))
        data = {}
    return make_payload(source.get("items"), data, default_mode, optional, missing_key)


async def secret_payload(objects: PodObjects, source: dict, default_mode: int) -> dict[str, FileProjection]:
    """A `secret` volume source (or projection) {secretName|name, items, optional}."""
    name = source.get("secretName") or source.get("name") or ""
    return await _object_payload(objects, "Secret", name, source, default_mode,
                                 "references non-existent secret key: %s")


async def config_map_payload(objects: PodObjects, source: dict, default_mode: int) -> dict[str, FileProjection]:
    """A `configMap` volume source (or projection) {name, items, optional}; binaryData too."""
    return await _object_payload(objects, "ConfigMap", source.get("name") or "", source, default_mode,
                                 "configmap references non-existent config key: %s")


def downward_api_payload(pod: dict, items: list[dict] | None, default_mode: int,
                         allocatable: dict | None) -> dict[str, FileProjection]:
    """A `downwardAPI` volume source's items: metadata fieldRefs and container
    resourceFieldRefs. Every item is tried; the errors are reported together."""
    payload, errors = {}, []
    for item in items or []:
        try:
            payload[item["path"]] = FileProjection(_downward_value(pod, item, allocatable).encode(),
                                                   _mode(item.get("mode"), default_mode))
        except DownwardAPIError as e:
            errors.append(str(e))
    _raise_all(errors)
    return payload


def _downward_value(pod: dict, item: dict, allocatable: dict | None) -> str:
    if item.get("fieldRef"):
        return metadata_field(pod, item["fieldRef"].get("fieldPath") or "")
    if item.get("resourceFieldRef"):
        ref = item["resourceFieldRef"]
        return resource_value(ref, find_container(pod, ref.get("containerName") or ""), allocatable)
    raise DownwardAPIError(f"downwardAPI item {item.get('path')}: needs a fieldRef or a resourceFieldRef")


async def projected_payload(pod: dict, objects: PodObjects, source: dict,
                            allocatable: dict | None, tokens=None) -> dict[str, FileProjection]:
    """A `projected` volume source: its sources merged in order (a later path wins), all
    with the projected defaultMode. serviceAccountToken projections come from `tokens`
    (kubelet.tokens.TokenManager; None: left out); every source is tried and the errors
    reported together."""
    default_mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
    payload, errors = {}, []
    for projection in source.get("sources") or []:
        try:
            payload.update(await _projection(pod, objects, projection, default_mode, allocatable, tokens))
        except ContentError as e:
            errors.append(str(e))
    _raise_all(errors)
    return payload


async def _projection(pod, objects, projection: dict, default_mode: int, allocatable,
                      tokens=None) -> dict[str, FileProjection]:
    if projection.get("secret"):
        return await secret_payload(objects, projection["secret"], default_mode)
    if projection.get("configMap"):
        return await config_map_payload(objects, projection["configMap"], default_mode)
    if projection.get("downwardAPI"):
        return downward_api_payload(pod, projection["downwardAPI"].get("items"), default_mode, allocatable)
    if projection.get("serviceAccountToken") and tokens is not None:
        return await token_payload(pod, projection["serviceAccountToken"], default_mode, tokens)
    return {}   # clusterTrustBundle (not supported)


async def token_payload(pod: dict, source: dict, default_mode: int, tokens) -> dict[str, FileProjection]:
    """A serviceAccountToken source: the token at its path."""
    try:
        token = await tokens.token(pod, source)
    except TokenError as err:
        raise ContentError(str(err)) from None
    return {source.get("path") or "token": FileProjection(token.encode(), default_mode)}


def _raise_all(errors: list[str]) -> None:
    """Kubernetes' utilerrors.NewAggregate: one error as is, several as `[a, b]`."""
    if len(errors) == 1:
        raise ContentError(errors[0])
    if errors:
        raise ContentError("[" + ", ".join(errors) + "]")


async def content_payload(pod: dict, volume: dict, objects: PodObjects,
                          allocatable: dict | None, tokens=None) -> dict[str, FileProjection]:
    """The payload of a secret, configMap, downwardAPI or projected volume."""
    if volume.get("projected") is not None:
        return await projected_payload(pod, objects, volume["projected"], allocatable, tokens)
    if volume.get("downwardAPI") is not None:
        source = volume["downwardAPI"]
        return downward_api_payload(pod, source.get("items"), _mode(source.get("defaultMode"), DEFAULT_MODE),
                                    allocatable)
    source = volume.get("secret") or volume.get("configMap") or {}
    make = secret_payload if volume.get("secret") is not None else config_map_payload
    return await make(objects, source, _mode(source.get("defaultMode"), DEFAULT_MODE))
