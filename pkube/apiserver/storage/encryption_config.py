"""Kubernetes' EncryptionConfiguration file (apiserver.config.k8s.io/v1) → a Transformer.

Supported providers: ``aesgcm`` (the first key encrypts, every key decrypts)
and ``identity`` (plaintext). The first provider of a resources entry decides
how new values are written; the others only read. Resources are plural names,
with or without group (``secrets``, ``deployments.apps``); wildcards are not
supported. Example, as ``write_encryption_config`` makes it::

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]
        providers:
          - aesgcm:
              keys:
                - name: key1
                  secret: <base64 of 32 random bytes>
          - identity: {}
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Sequence

import yaml

from pkube.apiserver.storage.transformer import AesGcmTransformer, PrefixTransformers

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"


class EncryptionConfigError(ValueError):
    """The encryption configuration is malformed or asks for something unsupported."""


def load_encryption_config(path: str | Path) -> PrefixTransformers:
    """The transformer described by the file at ``path``; EncryptionConfigError."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EncryptionConfigError(f"{path}: {e}") from None
    return transformer_from_config(doc, str(path))


def transformer_from_config(doc, where: str = "encryption config") -> PrefixTransformers:
    """The transformer described by a parsed EncryptionConfiguration."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(f"{where}: want apiVersion {API_VERSION}, kind {KIND}")
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionConfigError(f"{where}: resources must be a non-empty list")
    return PrefixTransformers([_entry(e, f"{where}: resources[{i}]") for i, e in enumerate(entries)])


def write_encryption_config(path: str | Path, resources: Sequence[str] = ("secrets",)) -> None:
    """Write a new configuration with one random AES-256-GCM key (mode 0600).

    Refuses to overwrite: a lost key makes the encrypted values unreadable."""
    secret = base64.b64encode(os.urandom(32)).decode()
    doc = {"apiVersion": API_VERSION, "kind": KIND, "resources": [{
        "resources": list(resources),
        "providers": [{"aesgcm": {"keys": [{"name": "key1", "secret": secret}]}}, {"identity": {}}]}]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def _entry(entry, where: str) -> AesGcmTransformer:
    if not isinstance(entry, dict):
        raise EncryptionConfigError(f"{where}: must be a mapping")
    prefixes = [_prefix(r, where) for r in _list(entry.get("resources"), f"{where}.resources")]
    providers = _list(entry.get("providers"), f"{where}.providers")
    write_key, write_name, keys = None, "key1", {}
    for i, provider in enumerate(providers):
        kind, keyset = _provider(provider, f"{where}.providers[{i}]")
        keys.update(keyset)
        if i == 0 and kind == "aesgcm":
            write_name = next(iter(keyset))
            write_key = keyset[write_name]
    return AesGcmTransformer(write_key, prefixes, write_name, keys)


def _provider(provider, where: str) -> tuple[str, dict[str, bytes]]:
    """(kind, name → key) of one provider entry."""
    if not isinstance(provider, dict) or len(provider) != 1:
        raise EncryptionConfigError(f"{where}: want exactly one of aesgcm, identity")
    kind, body = next(iter(provider.items()))
    if kind == "identity":
        return kind, {}
    if kind != "aesgcm":
        raise EncryptionConfigError(f"{where}: provider {kind!r} is not supported (aesgcm, identity)")
    keys = _list((body or {}).get("keys") if isinstance(body, dict) else None, f"{where}.aesgcm.keys")
    return kind, dict(_key(k, f"{where}.aesgcm.keys[{i}]") for i, k in enumerate(keys))


def _key(entry, where: str) -> tuple[str, bytes]:
    try:
        name, secret = entry["name"], base64.b64decode(entry["secret"], validate=True)
    except (TypeError, KeyError, binascii.Error, ValueError) as e:
        raise EncryptionConfigError(f"{where}: want name and base64 secret ({e})") from None
    if len(secret) not in (16, 24, 32) or not isinstance(name, str) or not name or ":" in name:
        raise EncryptionConfigError(f"{where}: the secret must be 16, 24 or 32 bytes and the name "
                                    "a non-empty string without ':'")
    return name, secret


def _prefix(resource, where: str) -> str:
    if not isinstance(resource, str) or not resource or "*" in resource or "/" in resource:
        raise EncryptionConfigError(f"{where}: bad resource {resource!r} (wildcards are not supported)")
    return f"/registry/{resource.split('.', 1)[0]}/"


def _list(value, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise EncryptionConfigError(f"{where}: must be a non-empty list")
    return value
