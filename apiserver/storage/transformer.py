"""Encryption at rest of stored values (Kubernetes' EncryptionConfiguration, aesgcm).

The store calls ``encrypt(key, plaintext)`` on every value it writes and
``decrypt(key, stored)`` on every value it reads. Values written before
encryption was enabled stay readable: ``decrypt`` returns them unchanged when
they do not carry this transformer's header.
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
HEADER_PREFIX = b"k8s:enc:aesgcm:v1:"


class Transformer(Protocol):
    """Turns a stored value into its at-rest form and back, per key."""

    def encrypt(self, key: str, data: bytes) -> bytes:
        """The bytes to store for ``data`` under ``key``."""

    def decrypt(self, key: str, data: bytes) -> bytes:
        """The plaintext of stored ``data``; raises ValueError if it cannot be decrypted."""


class AesGcmTransformer:
    """AES-GCM with a random 12-byte nonce per write, for keys under ``prefixes``.

    Stored form: ``k8s:enc:aesgcm:v1:{name}:`` + nonce + ciphertext-with-tag.
    The etcd key is the associated data, so a value copied to another key
    does not decrypt. ``key`` is 16, 24 or 32 bytes.
    """

    def __init__(self, key: bytes, prefixes: Sequence[str] = ("/registry/secrets/",),
                 name: str = "key1"):
        if len(key) not in (16, 24, 32):
            raise ValueError("AES-GCM key must be 16, 24 or 32 bytes")
        if not name or ":" in name:
            raise ValueError(f"invalid key name {name!r}")
        self._aead = AESGCM(key)
        self._prefixes = tuple(prefixes)
        self._header = HEADER_PREFIX + name.encode() + b":"

    def encrypt(self, key: str, data: bytes) -> bytes:
        """Encrypt when ``key`` is under one of the prefixes; else return ``data``."""
        if not key.startswith(self._prefixes):
            return data
        nonce = os.urandom(NONCE_SIZE)
        return self._header + nonce + self._aead.encrypt(nonce, data, key.encode())

    def decrypt(self, key: str, data: bytes) -> bytes:
        """Plaintext of ``data``; values without this header are returned as is.

        Raises ValueError when the value is ours but does not authenticate
        (wrong key, tampering, or moved to another key)."""
        if not data.startswith(self._header):
            if data.startswith(HEADER_PREFIX):
                raise ValueError(f"{key}: encrypted with an unknown key name")
            return data
        body = data[len(self._header):]
        try:
            return self._aead.decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], key.encode())
        except InvalidTag:
            raise ValueError(f"{key}: stored value does not decrypt with this key") from None
