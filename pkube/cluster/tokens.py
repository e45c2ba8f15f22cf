"""`pkube token create|list|delete`: bootstrap tokens for joining machines.

A join token is k3s style, ``K10<hash>::<id>.<secret>``: ``<hash>`` is the hex SHA-256 of the
cluster CA's public key (SubjectPublicKeyInfo, DER) — the very value kubeadm's
``--discovery-token-ca-cert-hash sha256:<hash>`` pins — and ``<id>.<secret>`` is the bootstrap
token (api.bootstraptoken), stored as the Secret kube-system/bootstrap-token-<id>. A joining
machine fetches the CA, checks its hash before trusting the server, then authenticates with
the token as ``system:bootstrap:<id>`` (docs/security.md).

Expired tokens' Secrets are removed here, when tokens are listed or created (there is no
token-cleaner controller): the apiserver refuses an expired token either way.
"""

from __future__ import annotations

import datetime
import re
from typing import Optional

from pkube.api import bootstraptoken
from pkube.client.errors import NotFound
from pkube.client.resources import SECRETS
from pkube.cluster import pki

JOIN_PREFIX = "K10"
JOIN_TOKEN = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6}\.[a-z0-9]{16})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_UNITS = {"h": 3600, "m": 60, "s": 1}


class TokenError(ValueError):
    """Bad input to a token command (one line for the user)."""


def parse_ttl(text: str) -> Optional[datetime.timedelta]:
    """A Go-style duration (``24h``, ``1h30m``, ``90s``); ``0``: never expires (None)."""
    if text.strip() in ("0", "0s"):
        return None
    parts = _DURATION_PART.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise TokenError(f"invalid --ttl {text!r}: want a duration such as 24h, 30m or 0 (never expires)")
    return datetime.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def join_token(ca_pem: bytes, token: str) -> str:
    """``K10<sha256 of the CA's public key>::<id>.<secret>``."""
    return JOIN_PREFIX + pki.ca_hash(ca_pem).removeprefix("sha256:") + "::" + token


def parse_join_token(text: str) -> tuple[str, str]:
    """(``sha256:<hash>``, ``<id>.<secret>``) of a join token; raises TokenError."""
    match = JOIN_TOKEN.match(text.strip())
    if match is None:
        raise TokenError("not a join token: want K10<64 hex digits>::<6 chars>.<16 chars>")
    return "sha256:" + match.group(1), match.group(2)


def create(client, ttl: Optional[datetime.timedelta], description: str = "") -> bootstraptoken.BootstrapToken:
    """Store a new bootstrap token (after removing expired ones); returns it."""
    remove_expired(client)
    token = bootstraptoken.generate(ttl, description)
    client.create(SECRETS, token.to_secret(), namespace=bootstraptoken.NAMESPACE)
    return token


def tokens(client) -> list[bootstraptoken.BootstrapToken]:
    """The well-formed bootstrap tokens stored in kube-system, oldest id first."""
    secrets = client.list_all(SECRETS, namespace=bootstraptoken.NAMESPACE)
    found = (bootstraptoken.BootstrapToken.from_secret(s) for s in secrets.get("items") or [])
    return sorted((t for t in found if t is not None), key=lambda t: t.id)


def remove_expired(client, now: Optional[datetime.datetime] = None) -> list[str]:
    """Delete the Secrets of expired tokens; returns their ids."""
    gone = [t.id for t in tokens(client) if t.expired(now)]
    for token_id in gone:
        delete(client, token_id)
    return gone


def delete(client, token_id: str) -> None:
    """Delete token `token_id` (its id, or the whole ``<id>.<secret>``); raises TokenError when
    there is none."""
    token_id = token_id.split(".", 1)[0]
    if not re.fullmatch(r"[a-z0-9]{6}", token_id):
        raise TokenError(f"invalid token id {token_id!r}: want 6 characters [a-z0-9]")
    try:
        client.delete(SECRETS, bootstraptoken.secret_name(token_id), namespace=bootstraptoken.NAMESPACE)
    except NotFound:
        raise TokenError(f"bootstrap token {token_id!r} not found") from None


def table(items: list[bootstraptoken.BootstrapToken], now: Optional[datetime.datetime] = None) -> str:
    """kubeadm's `token list` columns: ID, TTL, EXPIRES, USAGES, DESCRIPTION, EXTRA GROUPS."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows = [(t.id, _ttl(t, now), t.expiration.strftime("%Y-%m-%dT%H:%M:%SZ") if t.expiration else "<forever>",
             ",".join(t.usages) or "<none>", t.description or "<none>", ",".join(t.extra_groups) or "<none>")
            for t in items]
    header = ("ID", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]
    return "\n".join("   ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in (header, *rows))


def _ttl(token: bootstraptoken.BootstrapToken, now: datetime.datetime) -> str:
    if token.expiration is None:
        return "<forever>"
    left = int((token.expiration - now).total_seconds())
    if left <= 0:
        return "<invalid>"
    return f"{left // 3600}h" if left >= 3600 else f"{left // 60}m" if left >= 60 else f"{left}s"
