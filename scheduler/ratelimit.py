"""A token bucket that never waits: the scheduler's cap on the Events it writes.

kube-scheduler writes Events through a client limited to ``qps``/``burst``
(50/100 by default) behind a bounded queue that drops what does not fit, so
a burst of thousands of bindings records only some "Scheduled" Events and
leaves the apiserver to the bindings. ``TokenBucket.take`` gives the same
answer without a queue: True while tokens remain, False (drop it) otherwise.
"""

from __future__ import annotations

from client.clock import Clock


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved (full at start); time from ``clock``."""

    def __init__(self, rate: float, burst: int, clock: Clock):
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, not {rate} and {burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock.now()

    def take(self) -> bool:
        """Spend one token if there is one; False if the bucket is empty."""
        now = self.clock.now()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
