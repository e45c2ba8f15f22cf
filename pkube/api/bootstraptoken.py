"""Bootstrap tokens as Kubernetes keeps them: ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``),
stored as the Secret ``kube-system/bootstrap-token-<id>`` of type
``bootstrap.kubernetes.io/token`` (data: token-id, token-secret, expiration, description,
usage-bootstrap-authentication, usage-bootstrap-signing, auth-extra-groups).

The apiserver authenticates them (apiserver.auth); `pkube token` creates, lists and deletes
them. Both read the Secret through `BootstrapToken.from_secret`.
"""

from __future__ import annotations

import base64
import datetime
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Optional

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
DEFAULT_EXTRA_GROUP = "system:bootstrappers:kubeadm:default-node-token"
TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
EXTRA_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
USAGES = ("authentication", "signing")
ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class BootstrapToken:
    """One token: ``id``, ``secret``, when it expires (None: never), what it may be used for,
    and the groups it adds to ``system:bootstrappers``."""

    id: str
    secret: str
    expiration: Optional[datetime.datetime] = None
    description: str = ""
    usages: tuple[str, ...] = USAGES
    extra_groups: tuple[str, ...] = field(default=(DEFAULT_EXTRA_GROUP,))

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def user(self) -> str:
        return USER_PREFIX + self.id

    def expired(self, now: Optional[datetime.datetime] = None) -> bool:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return self.expiration is not None and now >= self.expiration

    def to_secret(self) -> dict:
        """The Secret that stores this token."""
        data = {"token-id": self.id, "token-secret": self.secret, "description": self.description,
                **{f"usage-bootstrap-{u}": "true" for u in self.usages}}
        if self.expiration is not None:
            data["expiration"] = self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.extra_groups:
            data["auth-extra-groups"] = ",".join(self.extra_groups)
        return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
                "metadata": {"name": secret_name(self.id), "namespace": NAMESPACE},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items() if v}}

    @classmethod
    def from_secret(cls, secret: dict) -> Optional["BootstrapToken"]:
        """The token a Secret stores; None when it is not a well-formed bootstrap token Secret
        (wrong type or name, bad id or secret, unparsable expiration: Kubernetes ignores those)."""
        if secret.get("type") != SECRET_TYPE:
            return None
        try:
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        except (ValueError, UnicodeDecodeError):
            return None
        token_id, token_secret = data.get("token-id", ""), data.get("token-secret", "")
        name = (secret.get("metadata") or {}).get("name", "")
        if not TOKEN.match(f"{token_id}.{token_secret}") or name != secret_name(token_id):
            return None
        try:
            expiration = parse_time(data["expiration"]) if data.get("expiration") else None
        except ValueError:
            return None
        usages = tuple(u for u in USAGES if data.get(f"usage-bootstrap-{u}") == "true")
        groups = tuple(g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip())
        return cls(token_id, token_secret, expiration, data.get("description", ""), usages, groups)


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (``2026-12-05T10:00:00Z``) as an aware datetime; raises ValueError."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return when


def generate(ttl: Optional[datetime.timedelta], description: str = "",
             now: Optional[datetime.datetime] = None) -> BootstrapToken:
    """A new random token; `ttl` None or zero: it never expires."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    pick = lambda n: "".join(secrets.choice(ALPHABET) for _ in range(n))   # noqa: E731
    expiration = (now + ttl).replace(microsecond=0) if ttl else None
    return BootstrapToken(pick(6), pick(16), expiration, description)
