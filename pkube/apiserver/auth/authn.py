"""Authentication: who is asking, in Kubernetes' order.

1. An x509 client certificate (CN = user, O = groups), verified against the client CA by the
   TLS handshake itself (apiserver.tlsscope puts the verified certificate into the scope; one
   that does not verify never gets a connection). Its identity is worked out once per
   connection.
2. A bearer token, offered to each `TokenAuthenticator` of the chain in turn: the static
   token file, bootstrap tokens, then whatever else is plugged in (ServiceAccount JWTs).
   Successes are cached for TOKEN_CACHE_TTL seconds (Kubernetes' token success cache TTL),
   so a revoked or expired token may be accepted up to that long after.
3. Nothing presented: ``system:anonymous``, refused with 401 unless `allow_anonymous`.

Every authenticated user also gets the group ``system:authenticated``.
"""

from __future__ import annotations

import ssl
import time
from typing import Callable, Optional, Protocol, Sequence

from pkube.apiserver import errors
from pkube.apiserver.auth.user import ANONYMOUS, AUTHENTICATED_GROUP, UserInfo

TOKEN_CACHE_TTL = 10.0
TOKEN_CACHE_SIZE = 10_000
_USER_KEY = "pkube.user"     # the per-connection memo in the TLS extension dict


class TokenAuthenticator(Protocol):
    """One kind of bearer token."""

    async def authenticate_token(self, token: str) -> Optional[UserInfo]:
        """The user `token` stands for; None when the token is not of this kind (the next
        authenticator is asked); raise ``errors.unauthorized()`` for a token of this kind that
        is invalid, expired or revoked."""


class TokenCache:
    """Users of tokens recently authenticated, each for `ttl` seconds (bounded: when full,
    everything is dropped and authenticated again)."""

    def __init__(self, ttl: float = TOKEN_CACHE_TTL, size: int = TOKEN_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._users: dict[str, tuple[float, UserInfo]] = {}

    def get(self, token: str) -> Optional[UserInfo]:
        found = self._users.get(token)
        if found is None:
            return None
        if found[0] <= self.clock():
            del self._users[token]
            return None
        return found[1]

    def put(self, token: str, user: UserInfo) -> None:
        if len(self._users) >= self.size:
            self._users.clear()
        self._users[token] = (self.clock() + self.ttl, user)


class RequestAuthenticator:
    """create_app's ``authenticator``: an async callable(Request or WebSocket) -> UserInfo that
    raises the 401 ApiError (reason Unauthorized, message "Unauthorized") for a bad credential
    or, unless `allow_anonymous`, for none. `client_certificates` False ignores certificates;
    `token_authenticators` are asked in order (see TokenAuthenticator)."""

    def __init__(self, token_authenticators: Sequence[TokenAuthenticator] = (), *,
                 client_certificates: bool = True, allow_anonymous: bool = False,
                 cache: Optional[TokenCache] = None, wall_clock: Callable[[], float] = time.time):
        self.token_authenticators = list(token_authenticators)
        self.client_certificates = client_certificates
        self.allow_anonymous = allow_anonymous
        self.cache = cache or TokenCache()
        self.wall_clock = wall_clock

    async def __call__(self, request) -> UserInfo:
        if self.client_certificates:
            user = self.certificate_user(request.scope)
            if user is not None:
                return user
        header = request.headers.get("authorization")
        if header is not None:
            return await self.token_user(bearer_token(header))
        if self.allow_anonymous:
            return ANONYMOUS
        raise errors.unauthorized()

    def certificate_user(self, scope) -> Optional[UserInfo]:
        """The user of the connection's verified client certificate; None without one; 401
        when it has expired since the handshake or names no user."""
        tls = (scope.get("extensions") or {}).get("tls")
        if not tls or not tls.get("client_cert"):
            return None
        memo = tls.get(_USER_KEY)
        if memo is None:
            memo = tls[_USER_KEY] = certificate_identity(tls["client_cert"])
        user, not_after = memo
        if user is None or self.wall_clock() >= not_after:
            raise errors.unauthorized()
        return user

    async def token_user(self, token: str) -> UserInfo:
        """The user of a bearer token (cached); 401 when no authenticator takes it."""
        if not token:
            raise errors.unauthorized()
        user = self.cache.get(token)
        if user is not None:
            return user
        for authenticator in self.token_authenticators:
            user = await authenticator.authenticate_token(token)
            if user is not None:
                user = authenticated(user)
                self.cache.put(token, user)
                return user
        raise errors.unauthorized()


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; '' for any other scheme."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def certificate_identity(peer: dict) -> tuple[Optional[UserInfo], float]:
    """(user or None when the certificate has no CN, its notAfter as a unix time) from
    ``ssl.SSLSocket.getpeercert()``'s dict."""
    names = [dict(rdn) for rdn in peer.get("subject", ())]
    common = [n["commonName"] for n in names if "commonName" in n]
    groups = tuple(n["organizationName"] for n in names if "organizationName" in n)
    not_after = ssl.cert_time_to_seconds(peer["notAfter"]) if peer.get("notAfter") else 0.0
    if not common or not common[0]:
        return None, not_after
    return UserInfo(common[0], groups=(*groups, AUTHENTICATED_GROUP)), not_after


def authenticated(user: UserInfo) -> UserInfo:
    """`user` with ``system:authenticated`` among its groups."""
    if AUTHENTICATED_GROUP in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED_GROUP), user.extra)
