"""Kubernetes' container restart back-off: 10 s doubling to 5 min, forgotten after a
container ran 10 minutes. The first restart after a crash is immediate."""

from __future__ import annotations

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0
RESET_AFTER_SECONDS = 600.0


class RestartBackoff:
    """The back-off of one container of one pod. Times are monotonic seconds."""

    def __init__(self):
        self.delay = 0.0          # what the next restart waits after an exit
        self.until = 0.0          # no restart before this
        self.last_wait = 0.0      # what the pending restart waits ("back-off 20s")

    def on_exit(self, exited_at: float, ran_for: float) -> None:
        """A container instance exited at `exited_at` after running `ran_for` seconds: the
        next restart waits the current delay, and the delay grows for the one after."""
        if ran_for >= RESET_AFTER_SECONDS:
            self.delay = 0.0
        self.last_wait = self.delay
        self.until = exited_at + self.delay
        self.delay = INITIAL_SECONDS if self.delay == 0 else min(self.delay * 2, MAX_SECONDS)

    def waiting(self, now: float) -> float:
        """Seconds left before a restart is allowed (0 when it is)."""
        return max(0.0, self.until - now)
