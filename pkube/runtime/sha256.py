"""sha256 without `hashlib`: its OpenSSL backend costs every pdocker command milliseconds to
load, and CPython's own sha256 is as good for the few bytes the run path hashes (a helper's
source, a socket name)."""

from __future__ import annotations


def sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest(); hashlib itself where CPython's module is named
    differently."""
    try:
        from _sha256 import sha256   # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256   # CPython 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()
