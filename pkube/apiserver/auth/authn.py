"""Authentication: who is asking, in Kubernetes' order.

1. A front proxy (apiserver.auth.requestheader): a client certificate of the requestheader CA
   with an allowed CN, and the user it names in the X-Remote-* headers.
2. An x509 client certificate (CN = user, O = groups), verified against the client CA by the
   TLS handshake itself (apiserver.tlsscope puts the verified certificate into the scope; one
   that does not verify never gets a connection). Its identity is worked out once per
   connection. When the handshake also trusts the requestheader CA, the certificate must be
   signed by a certificate of the client CA file (`client_cas`).
3. A bearer token, offered to each `TokenAuthenticator` of the chain in turn: the static
   token file, bootstrap tokens, then whatever else is plugged in (ServiceAccount JWTs).
   Successes are cached for TOKEN_CACHE_TTL seconds (Kubernetes' token success cache TTL),
   so a revoked or expired token may be accepted up to that long after.
4. Nothing presented: ``system:anonymous``, refused with 401 unless `allow_anonymous`. A
   certificate that failed 1 or 2 (a front proxy not allowed, a certificate of the
   requestheader CA without headers) is a 401 even then, as Kubernetes' union of
   authenticators fails when one errs and none succeeds.

Every authenticated user also gets the group ``system:authenticated`` (unless it already
carries ``system:unauthenticated``, as Kubernetes' AuthenticatedGroupAdder leaves it).
"""

from __future__ import annotations

import ssl
import time
from typing import Callable, Optional, Protocol, Sequence

from pkube.apiserver import errors
from pkube.apiserver.auth import requestheader
from pkube.apiserver.auth.user import ANONYMOUS, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP, UserInfo

TOKEN_CACHE_TTL = 10.0
TOKEN_CACHE_SIZE = 10_000
_USER_KEY = "pkube.user"     # the per-connection memo in the TLS extension dict
_ISSUER_KEY = "pkube.client-ca"


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
    `token_authenticators` are asked in order (see TokenAuthenticator); `request_header` (an
    apiserver.auth.requestheader.RequestHeaderAuthenticator) comes first; `client_cas` (the
    client CA file's certificates), when given, must have signed a user's certificate."""

    def __init__(self, token_authenticators: Sequence[TokenAuthenticator] = (), *,
                 client_certificates: bool = True, allow_anonymous: bool = False,
                 cache: Optional[TokenCache] = None, wall_clock: Callable[[], float] = time.time,
                 request_header: Optional[requestheader.RequestHeaderAuthenticator] = None,
                 client_cas: Optional[Sequence[object]] = None):
        self.token_authenticators = list(token_authenticators)
        self.client_certificates = client_certificates
        self.allow_anonymous = allow_anonymous
        self.cache = cache or TokenCache()
        self.wall_clock = wall_clock
        self.request_header = request_header
        self.client_cas = None if client_cas is None else list(client_cas)

    async def __call__(self, request) -> UserInfo:
        failed = False
        if self.request_header is not None:
            user, failed = self.proxied_user(request)
            if user is not None:
                return user
        if self.client_certificates and self._from_client_ca(request.scope):
            user = self.certificate_user(request.scope)
            if user is not None:
                return user
        elif self.client_certificates and self._has_certificate(request.scope):
            failed = True
        header = request.headers.get("authorization")
        if header is not None:
            return await self.token_user(bearer_token(header))
        if self.allow_anonymous and not failed:
            return ANONYMOUS
        raise errors.unauthorized()

    def proxied_user(self, request) -> tuple[Optional[UserInfo], bool]:
        """(the user an allowed front proxy names, or None; whether the certificate was a
        requestheader one that did not authenticate: not allowed, or no username header)."""
        verdict = self.request_header.verdict(request.scope, self.wall_clock())
        if verdict != requestheader.ALLOWED:
            return None, verdict == requestheader.NOT_ALLOWED
        user = self.request_header.user(request)
        return (None, True) if user is None else (authenticated(user), False)

    @staticmethod
    def _has_certificate(scope) -> bool:
        tls = (scope.get("extensions") or {}).get("tls")
        return bool(tls and tls.get("client_cert"))

    def _from_client_ca(self, scope) -> bool:
        """True unless `client_cas` is set and did not sign the connection's certificate
        (worked out once per connection); True without a certificate."""
        tls = (scope.get("extensions") or {}).get("tls")
        if self.client_cas is None or not tls or not tls.get("client_cert_chain"):
            return True
        if _ISSUER_KEY not in tls:
            tls[_ISSUER_KEY] = requestheader.issued_by(requestheader.peer_certificate(tls), self.client_cas)
        return tls[_ISSUER_KEY]

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
    """`user` with ``system:authenticated`` among its groups (left as it is when it carries
    ``system:authenticated`` or ``system:unauthenticated`` already)."""
    if AUTHENTICATED_GROUP in user.groups or UNAUTHENTICATED_GROUP in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED_GROUP), user.extra)
