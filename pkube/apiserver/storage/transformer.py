"""Encryption at rest of stored values (Kubernetes' EncryptionConfiguration, aesgcm).

The store calls ``encrypt(key, plaintext)`` on every value it writes and
``decrypt(key, stored)`` on every value it reads. Values written before
encryption was enabled stay readable: ``decrypt`` returns them unchanged when
they do not carry an encryption header.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Protocol, Sequence

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


def _header(name: str) -> bytes:
    if not name or ":" in name:
        raise ValueError(f"invalid encryption key name {name!r}")
    return HEADER_PREFIX + name.encode() + b":"


def _aead(key: bytes) -> AESGCM:
    if len(key) not in (16, 24, 32):
        raise ValueError("AES-GCM key must be 16, 24 or 32 bytes")
    return AESGCM(key)


class AesGcmTransformer:
    """AES-GCM with a random 12-byte nonce per write, for keys under ``prefixes``.

    Stored form: ``k8s:enc:aesgcm:v1:{name}:`` + nonce + ciphertext-with-tag.
    The etcd key is the associated data, so a value copied to another key
    does not decrypt. ``key`` (16, 24 or 32 bytes) encrypts new writes; None
    writes plaintext (the identity provider first). ``old_keys`` (name → key)
    still decrypt what they wrote, for key rotation.
    """

    def __init__(self, key: Optional[bytes], prefixes: Sequence[str] = ("/registry/secrets/",),
                 name: str = "key1", old_keys: Optional[Mapping[str, bytes]] = None):
        self._prefixes = tuple(prefixes)
        self._readers = {_header(n): _aead(k) for n, k in (old_keys or {}).items()}
        self._writer = None
        if key is not None:
            self._writer = (_header(name), _aead(key))
            self._readers[self._writer[0]] = self._writer[1]

    def covers(self, key: str) -> bool:
        """True when values under ``key`` are this transformer's to handle."""
        return key.startswith(self._prefixes)

    def encrypt(self, key: str, data: bytes) -> bytes:
        """Encrypt when ``key`` is under one of the prefixes; else return ``data``."""
        if self._writer is None or not self.covers(key):
            return data
        header, aead = self._writer
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + aead.encrypt(nonce, data, key.encode())

    def is_stale(self, key: str, data: bytes) -> bool:
        """Whether stored ``data`` is not in the form a write would give it now (another
        key's ciphertext, or plaintext while encryption is on): worth rewriting."""
        if not self.covers(key):
            return False
        if self._writer is None:
            return data.startswith(HEADER_PREFIX)
        return not data.startswith(self._writer[0])

    def decrypt(self, key: str, data: bytes) -> bytes:
        """Plaintext of ``data``; values without the header are returned as is.

        Raises ValueError when the value is encrypted but does not
        authenticate (unknown key name, wrong key, tampering, or moved to
        another key)."""
        if not data.startswith(HEADER_PREFIX):
            return data
        end = data.find(b":", len(HEADER_PREFIX))
        aead = self._readers.get(data[:end + 1]) if end > 0 else None
        if aead is None:
            raise ValueError(f"{key}: encrypted with an unknown key name")
        body = data[end + 1:]
        try:
            return aead.decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], key.encode())
        except InvalidTag:
            raise ValueError(f"{key}: stored value does not decrypt with its key") from None


class PrefixTransformers:
    """Several transformers, each for its own prefixes (one per resources
    entry of an EncryptionConfiguration); the first that covers a key wins."""

    def __init__(self, transformers: Sequence[AesGcmTransformer]):
        self._transformers = tuple(transformers)

    def _for(self, key: str) -> Optional[AesGcmTransformer]:
        return next((t for t in self._transformers if t.covers(key)), None)

    def encrypt(self, key: str, data: bytes) -> bytes:
        transformer = self._for(key)
        return data if transformer is None else transformer.encrypt(key, data)

    def is_stale(self, key: str, data: bytes) -> bool:
        transformer = self._for(key)
        return transformer is not None and transformer.is_stale(key, data)

    def decrypt(self, key: str, data: bytes) -> bytes:
        transformer = self._for(key)
        if transformer is None:
            if data.startswith(HEADER_PREFIX):
                raise ValueError(f"{key}: encrypted, but no encryption is configured for it")
            return data
        return transformer.decrypt(key, data)
