"""Key ranges, continue tokens and the store's bad-request error.

Keys are strings such as ``/registry/pods/default/web``. A *prefix* ends in
'/' and stands for every key under it; a string without a trailing '/' names
exactly one key (used to watch a single object).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Optional

CONTINUE_VERSION = "meta.k8s.io/v1"


class BadStorageRequest(ValueError):
    """The caller's input cannot be served (malformed continue token, a
    revision newer than the store's). Not retryable: answer 400."""


def range_end(key: bytes) -> bytes:
    """The etcd range end that covers every key starting with ``key``."""
    end = bytearray(key)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def key_range(prefix: str) -> tuple[bytes, bytes]:
    """(start, end) for etcd; end is b"" (a single key) when ``prefix`` does
    not end in '/'."""
    start = prefix.encode()
    return start, (range_end(start) if prefix.endswith("/") else b"")


def matches(prefix: str, key: str) -> bool:
    """True when ``key`` lies under ``prefix`` (or equals it, for a single key)."""
    return key.startswith(prefix) if prefix.endswith("/") else key == prefix


def resource_prefix(key: str) -> Optional[str]:
    """``/registry/{resource}/`` for any key under it, else None."""
    parts = key.split("/", 3)
    if len(parts) < 4 or parts[0] != "" or parts[1] != "registry" or not parts[2]:
        return None
    return f"/registry/{parts[2]}/"


def encode_continue(revision: int, prefix: str, next_key: str) -> str:
    """An opaque token: base64 of JSON (revision, next key relative to prefix),
    like Kubernetes'."""
    body = {"v": CONTINUE_VERSION, "rv": revision, "start": next_key[len(prefix):]}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    """(revision, absolute start key) from a token made by encode_continue.

    Raises BadStorageRequest on anything malformed or pointing outside prefix.
    """
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = body["rv"], body["start"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeError) as e:
        raise BadStorageRequest(f"invalid continue token: {e}") from None
    if body.get("v") != CONTINUE_VERSION or not isinstance(revision, int) or revision <= 0 \
            or not isinstance(start, str) or ".." in start.split("/") or start.startswith("/"):
        raise BadStorageRequest("invalid continue token")
    return revision, prefix + start
