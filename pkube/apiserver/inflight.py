"""Overload protection: kube-apiserver's max-in-flight filter and a cap on watches per user.

At most ``max_read_only`` read-only requests (get, list) and ``max_mutating`` others
(create, update, patch, delete...) are served at once; the next one is answered at once
with 429, ``Retry-After: 1`` and Kubernetes' plain-text message, rather than queued
(clients retry: client-go, kubectl and our client honour Retry-After). Long-running
requests (watch, proxy, exec, attach, port-forward, logs) are not counted, as upstream;
instead each user may hold at most ``max_watches_per_user`` watches at once. As upstream,
a caller in ``system:masters`` is never refused by the in-flight limits (a super-admin
must always get an answer); the watch cap applies to everyone. 0 means no limit.

The counters are plain integers: the apiserver serves on one event loop, and ``admit``
and the release it returns run on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pkube.apiserver import errors
from pkube.apiserver.auth.user import MASTERS_GROUP, UserInfo
from pkube.apiserver.requestinfo import RequestInfo

DEFAULT_MAX_READ_ONLY = 400
DEFAULT_MAX_MUTATING = 200
DEFAULT_MAX_WATCHES_PER_USER = 1000
RETRY_AFTER_SECONDS = 1
MESSAGE = "Too many requests, please try again later."
UNAUTHENTICATED = ""       # the watch counter's key when the apiserver runs without authentication

Release = Callable[[], None]


def too_many_requests() -> errors.ApiError:
    """The in-flight limit's 429 as kube-apiserver's filter writes it (maxinflight.go
    tooManyRequests: http.Error, text/plain, Retry-After)."""
    return errors.PlainTextError(429, "TooManyRequests", MESSAGE, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def too_many_watches(message: str) -> errors.ApiError:
    """pkube's own per-user watch cap: a 429 Status (its ``details.retryAfterSeconds`` matches
    the Retry-After header)."""
    return errors.ApiError(429, "TooManyRequests", message, {"retryAfterSeconds": RETRY_AFTER_SECONDS})


def _nothing() -> None:
    return None


class InflightLimiter:
    """The limits of one apiserver; ``admit`` is called once per request after
    authentication, and the release it returns once the response has been sent."""

    def __init__(self, max_read_only: int = DEFAULT_MAX_READ_ONLY, max_mutating: int = DEFAULT_MAX_MUTATING,
                 max_watches_per_user: int = DEFAULT_MAX_WATCHES_PER_USER):
        self.limits = {True: max_read_only, False: max_mutating}
        self.in_flight = {True: 0, False: 0}       # read_only -> requests being served
        self.max_watches_per_user = max_watches_per_user
        self.watches: Counter[str] = Counter()

    def admit(self, info: RequestInfo, user: UserInfo | None) -> Release:
        """Count the request in, or raise the 429 ApiError. The release is idempotent."""
        if info.long_running:
            return self._admit_long_running(info, user)
        kind = info.read_only
        limit = self.limits[kind]
        if limit <= 0:
            return _nothing
        if self.in_flight[kind] >= limit and not (user is not None and MASTERS_GROUP in user.groups):
            raise too_many_requests()
        self.in_flight[kind] += 1
        return self._release_once(lambda: self.in_flight.__setitem__(kind, self.in_flight[kind] - 1))

    def _admit_long_running(self, info: RequestInfo, user: UserInfo | None) -> Release:
        if info.verb != "watch" or self.max_watches_per_user <= 0:
            return _nothing
        who = user.name if user is not None else UNAUTHENTICATED
        if self.watches[who] >= self.max_watches_per_user:
            raise too_many_watches(f"Too many watches for user {who or 'unauthenticated'}: "
                                    f"at most {self.max_watches_per_user} at once, please try again later.")
        self.watches[who] += 1
        return self._release_once(lambda: self._end_watch(who))

    def _end_watch(self, who: str) -> None:
        self.watches[who] -= 1
        if self.watches[who] <= 0:
            del self.watches[who]

    @staticmethod
    def _release_once(release: Release) -> Release:
        done = []

        def once() -> None:
            if not done:
                done.append(True)
                release()
        return once
