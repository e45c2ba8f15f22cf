"""Bearer token authenticators of the chain (apiserver.auth.authn.TokenAuthenticator): the
static token file and bootstrap tokens."""

from __future__ import annotations

import csv
import datetime
import hmac
from typing import Callable, Optional

from pkube.api import bootstraptoken
from pkube.apiserver import errors
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.storage.interface import NotFound

SECRETS_KEY = "/registry/secrets/{namespace}/{name}"


class TokenFileError(ValueError):
    """A --token-auth-file that cannot be read (the message names the file and line)."""


class StaticTokens:
    """Kubernetes' --token-auth-file: a CSV of ``token,user,uid,"group1,group2"`` (the groups
    column optional), read once at start."""

    def __init__(self, users: dict[str, UserInfo]):
        self.users = users

    @classmethod
    def load(cls, path: str) -> "StaticTokens":
        """Raises TokenFileError."""
        users: dict[str, UserInfo] = {}
        try:
            with open(path, newline="") as f:
                for number, row in enumerate(csv.reader(f), 1):
                    if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                        continue
                    if len(row) < 3 or not row[0].strip() or not row[1].strip():
                        raise TokenFileError(f"{path}:{number}: want token,user,uid[,\"group1,group2\"]")
                    groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
                    users[row[0].strip()] = UserInfo(row[1].strip(), row[2].strip(), groups)
        except OSError as err:
            raise TokenFileError(f"{path}: {err.strerror}") from None
        return cls(users)

    async def authenticate_token(self, token: str) -> Optional[UserInfo]:
        return self.users.get(token)


class BootstrapTokens:
    """Bootstrap tokens (``<id>.<secret>``) stored as Secrets ``kube-system/bootstrap-token-<id>``
    (api.bootstraptoken): user ``system:bootstrap:<id>``, groups ``system:bootstrappers`` and
    its auth-extra-groups. A token whose Secret is missing is not ours (None); one whose secret
    differs, that has expired, is being deleted or is not for authentication is refused."""

    def __init__(self, storage, now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
            datetime.timezone.utc)):
        self.storage, self.now = storage, now

    async def authenticate_token(self, token: str) -> Optional[UserInfo]:
        match = bootstraptoken.TOKEN.match(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        key = SECRETS_KEY.format(namespace=bootstraptoken.NAMESPACE, name=bootstraptoken.secret_name(token_id))
        try:
            stored = await self.storage.get(key)
        except NotFound:
            return None
        found = bootstraptoken.BootstrapToken.from_secret(stored)
        if (found is None or not hmac.compare_digest(found.secret, secret) or found.expired(self.now())
                or "authentication" not in found.usages
                or (stored.get("metadata") or {}).get("deletionTimestamp")):
            raise errors.unauthorized()
        groups = (bootstraptoken.GROUP, *(g for g in found.extra_groups if bootstraptoken.EXTRA_GROUP.match(g)))
        return UserInfo(found.user, groups=groups)
