"""How the kubelet reads the Secrets and ConfigMaps a pod refers to.

`ObjectSource` is injected: the kubelet implements it over the API client, unit tests over a
dict. `PodObjects` reads each object of one pod's namespace at most once per sync (what
Kubernetes' makeEnvironmentVariables does with its configMaps/secrets maps).
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

# The lowercase singular names Kubernetes' secret and configmap managers put in their
# NotFound errors: `secret "db" not found`, `configmap "app" not found`.
NOT_FOUND_NAMES = {"Secret": "secret", "ConfigMap": "configmap"}


class ObjectSource(Protocol):
    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The object (kind "Secret" or "ConfigMap"), or None when it does not exist. Other
        failures (the apiserver cannot be reached) raise; the caller retries the sync."""


def not_found(kind: str, name: str) -> str:
    return f'{NOT_FOUND_NAMES.get(kind, kind.lower())} "{name}" not found'


class ObjectDataError(ValueError):
    """A stored object whose data cannot be decoded (not base64)."""


class PodObjects:
    """The Secrets and ConfigMaps of one namespace, each read once (None: does not exist)."""

    def __init__(self, source: ObjectSource, namespace: str):
        self.source = source
        self.namespace = namespace
        self._seen: dict[tuple[str, str], dict | None] = {}

    async def get(self, kind: str, name: str) -> dict | None:
        key = (kind, name)
        if key not in self._seen:
            self._seen[key] = await self.source.get(kind, self.namespace, name)
        return self._seen[key]

    async def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        """The decoded data of a Secret or ConfigMap (a ConfigMap's binaryData included),
        None when it does not exist. Raises ObjectDataError."""
        obj = await self.get(kind, name)
        if obj is None:
            return None
        return secret_data(obj) if kind == "Secret" else config_map_data(obj)


def secret_data(secret: dict) -> dict[str, bytes]:
    """A Secret's `data`, base64-decoded."""
    try:
        return {k: base64.b64decode(v or "", validate=True) for k, v in (secret.get("data") or {}).items()}
    except (binascii.Error, ValueError):
        raise ObjectDataError(f'secret "{secret["metadata"]["name"]}" has data that is not base64') from None


def config_map_data(config_map: dict) -> dict[str, bytes]:
    """A ConfigMap's `data` (UTF-8) and `binaryData` (base64-decoded) as bytes."""
    data = {k: (v or "").encode() for k, v in (config_map.get("data") or {}).items()}
    try:
        for key, value in (config_map.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        raise ObjectDataError(f'configmap "{config_map["metadata"]["name"]}" has binaryData that is not base64') from None
    return data
