"""The kubelet's ServiceAccount token manager, as Kubernetes' (pkg/kubelet/token).

A projected ``serviceAccountToken`` source gets its token through TokenRequest
(``POST serviceaccounts/NAME/token``) bound to the pod, for the source's audience (the
apiserver's when empty) and ``expirationSeconds`` (3600 by default). Tokens are kept per (pod
uid, account, audience, expiration) and requested again once 80 % of their life has passed, or
24 hours after they were issued, whichever comes first; until then the volume's periodic
refresh finds the same token and rewrites nothing. When a refresh fails, the old token is
used as long as it has not expired. ``forget(uid)`` drops a finished pod's tokens.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Optional

from pkube.client.clock import Clock
from pkube.client.errors import ApiError
from pkube.client.resources import SERVICEACCOUNTS

log = logging.getLogger(__name__)

DEFAULT_EXPIRATION = 3600
REFRESH_AFTER = 0.8                      # of the token's lifetime
MAX_AGE = dt.timedelta(hours=24)


class TokenError(RuntimeError):
    """No usable token (the message says why; the volume's next sync tries again)."""


@dataclass(frozen=True)
class Issued:
    token: str
    issued: dt.datetime
    expires: dt.datetime

    def needs_refresh(self, now: dt.datetime) -> bool:
        lifetime = self.expires - self.issued
        return now >= self.issued + min(lifetime * REFRESH_AFTER, MAX_AGE)


class TokenManager:
    """``client`` is the kubelet's AsyncApiClient (the Node authorizer lets it ask for the
    tokens of its pods' ServiceAccounts only)."""

    def __init__(self, client, clock: Optional[Clock] = None):
        self.client, self.clock = client, clock or Clock()
        self._tokens: dict[tuple, Issued] = {}

    async def token(self, pod: dict, source: dict) -> str:
        """The token for the projected ``source`` of ``pod``; raises TokenError."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        seconds = int(source.get("expirationSeconds") or DEFAULT_EXPIRATION)
        key = (meta["uid"], meta.get("namespace") or "default", account, source.get("audience") or "", seconds)
        now = self.clock.wall()
        cached = self._tokens.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.token
        try:
            issued = await self._request(pod, key, now)
        except ApiError as err:
            if cached is not None and now < cached.expires:
                log.warning("pod %s/%s: token refresh failed (%s); keeping the current token",
                            key[1], meta.get("name"), err.message or err)
                return cached.token
            raise TokenError(f"failed to fetch token: {err.message or err}") from None
        self._tokens[key] = issued
        return issued.token

    async def _request(self, pod: dict, key: tuple, now: dt.datetime) -> Issued:
        uid, namespace, account, audience, seconds = key
        spec: dict = {"expirationSeconds": seconds,
                      "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": uid}}
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = await self.client.create_subresource(SERVICEACCOUNTS, account, "token", body, namespace)
        status = answer.get("status") or {}
        if not status.get("token"):
            raise TokenError("the TokenRequest was answered without a token")
        expires = _parse_time(status.get("expirationTimestamp")) or now + dt.timedelta(seconds=seconds)
        return Issued(status["token"], now, expires)

    def forget(self, uid: str) -> None:
        """Drop the tokens of pod ``uid`` (it is gone from this node)."""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]


def _parse_time(text: Optional[str]) -> Optional[dt.datetime]:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
