"""Liveness, readiness and startup probes of running containers, on their schedules.

One `ProbeWorker` per probe, one `ContainerProbes` per running container instance (a restarted
container gets a new one). The semantics are the kubelet's (prober/worker.go):

- the first probe runs `initialDelaySeconds` after the container started, then one every
  `periodSeconds` counted from the start of the previous one (right away when a probe took
  longer than the period); a probe that times out is a failure;
- a result changes only after `successThreshold` successes or `failureThreshold` failures in a
  row; callbacks see only changes;
- readiness starts as failed, liveness as succeeded, startup as unknown; liveness and readiness
  do not run until the startup probe has succeeded once;
- once startup has decided (either way) or liveness has failed, that worker stops: this
  container instance is started, or it is about to be killed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from pkube.client.clock import Clock
from pkube.kubelet.handlers import HandlerResult, Handlers

log = logging.getLogger(__name__)

KINDS = ("startup", "liveness", "readiness")
INITIAL_RESULT = {"startup": None, "liveness": True, "readiness": False}
DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
            "successThreshold": 1, "failureThreshold": 3}


def failure_message(kind: str, message: str) -> str:
    """The text of the kubelet's Unhealthy event: "Liveness probe failed: <message>"."""
    return f"{kind.capitalize()} probe failed: {message}"


class ProbeWorker:
    """Runs one probe (`kind`: "liveness" | "readiness" | "startup") of one container.

    `on_change(result)` is called each time the probe's result flips (after the thresholds),
    with the HandlerResult of the probe that flipped it. `on_failure(result)`, when given, is
    called for every failed probe (the kubelet records an Unhealthy event for each). `gate`,
    when given, is awaited after the initial delay (the startup probe's success).
    `started_for` is how long the container has been running already (a kubelet that restarts
    and adopts it does not wait the initial delay again)."""

    def __init__(self, kind: str, probe: dict, container: dict, handlers: Handlers,
                 on_change: Callable[[HandlerResult], None], clock: Clock, *,
                 gate: Optional[asyncio.Event] = None, started_for: float = 0.0,
                 on_failure: Optional[Callable[[HandlerResult], None]] = None):
        if kind not in KINDS:
            raise ValueError(f"no such probe kind: {kind}")
        self.kind = kind
        self.result: Optional[bool] = INITIAL_RESULT[kind]
        self._probe, self._container, self._handlers, self._clock = probe, container, handlers, clock
        self._on_change, self._on_failure, self._gate = on_change, on_failure, gate
        self._started_for = started_for
        self._last: Optional[bool] = None
        self._run_length = 0

    def _setting(self, name: str) -> float:
        value = self._probe.get(name)
        if value is None or (value < 1 and name != "initialDelaySeconds"):
            return DEFAULTS[name]
        return value

    async def run(self) -> None:
        """Probe until cancelled, or until this container instance needs no more probing
        (startup decided, liveness failed): then return."""
        await self._clock.sleep(self._setting("initialDelaySeconds") - self._started_for)
        if self._gate is not None:
            await self._gate.wait()
        period, timeout = self._setting("periodSeconds"), self._setting("timeoutSeconds")
        while True:
            began = self._clock.now()
            outcome = await self._handlers.run(self._probe, self._container, timeout)
            if not outcome.ok and self._on_failure is not None:
                self._on_failure(outcome)
            if self._record(outcome):
                return
            await self._clock.sleep(began + period - self._clock.now())

    def _record(self, outcome: HandlerResult) -> bool:
        """Count `outcome` toward the thresholds, report a flip; True when probing is over."""
        if outcome.ok == self._last:
            self._run_length += 1
        else:
            self._last, self._run_length = outcome.ok, 1
        threshold = self._setting("successThreshold" if outcome.ok else "failureThreshold")
        if self._run_length < threshold:
            return False
        if self.result != outcome.ok:
            self.result = outcome.ok
            self._on_change(outcome)
        return (self.kind == "startup" and self.result is not None) or (self.kind == "liveness" and not self.result)


class ContainerProbes:
    """All probes of one running container instance.

    `on_result(kind, ok, message)` is called on every change of a probe's result: ("startup",
    True, _) once started; ("startup", False, msg) or ("liveness", False, msg): the container
    must be killed and restarted; ("readiness", ok, msg): its ready flag. After any call,
    `started` and `ready` give the container's flags. `on_failure(kind, message)`, when given,
    is called for every failed probe (for the Unhealthy events)."""

    def __init__(self, container: dict, handlers: Handlers, clock: Clock,
                 on_result: Callable[[str, bool, str], None], *,
                 on_failure: Optional[Callable[[str, str], None]] = None, started_for: float = 0.0):
        self._on_result, self._on_failure = on_result, on_failure
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self.workers: dict[str, ProbeWorker] = {}
        for kind in KINDS:
            probe = container.get(f"{kind}Probe")
            if probe:
                self.workers[kind] = ProbeWorker(
                    kind, probe, container, handlers, self._changed(kind), clock,
                    gate=None if kind == "startup" else self._started, started_for=started_for,
                    on_failure=self._failed(kind))
        if "startup" not in self.workers:
            self._started.set()
        self._name = container.get("name", "")

    @property
    def started(self) -> bool:
        """True once the startup probe succeeded (at once without one)."""
        return self._started.is_set()

    @property
    def ready(self) -> bool:
        """Started, and the readiness probe succeeded (no readiness probe: started is enough)."""
        readiness = self.workers.get("readiness")
        return self.started and (readiness is None or bool(readiness.result))

    def start(self) -> None:
        """Start every probe's worker (in the running event loop). Called once."""
        for kind, worker in self.workers.items():
            task = asyncio.get_running_loop().create_task(worker.run(), name=f"probe {kind} {self._name}")
            task.add_done_callback(_log_crash)
            self._tasks.append(task)

    def cancel(self) -> None:
        """Stop every worker without waiting: no callback is made once this returns. Safe to
        call twice; `stop` also waits until the workers have finished."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        """Stop every worker and wait until they have; no callback is made afterwards.
        Called before the container is stopped or killed, and safe to call twice."""
        self.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []

    def _changed(self, kind: str) -> Callable[[HandlerResult], None]:
        def changed(outcome: HandlerResult) -> None:
            if self._stopped:
                return
            if kind == "startup" and outcome.ok:
                self._started.set()
            self._on_result(kind, outcome.ok, outcome.message)
        return changed

    def _failed(self, kind: str) -> Optional[Callable[[HandlerResult], None]]:
        if self._on_failure is None:
            return None
        return lambda outcome: None if self._stopped else self._on_failure(kind, outcome.message)


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())
