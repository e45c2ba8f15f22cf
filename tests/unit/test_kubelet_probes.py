"""Probe schedules and results on a fake clock, with a fake container whose exec answers as
the test says: thresholds, initial delay, period, timeouts, startup gating, flips only."""

from __future__ import annotations

import asyncio

import pytest

from pkube.client.clock import FakeClock
from pkube.kubelet.handlers import HandlerResult, Handlers
from pkube.kubelet.probes import ContainerProbes, ProbeWorker, failure_message


class FakeContainer:
    """exec of ["check", KIND] answers per `healthy[KIND]`: True (exit 0), False (exit 1 with
    a message), or "timeout"; a probe takes `takes` seconds of the fake clock. Records
    (kind, time) of every probe."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.healthy = {"startup": True, "liveness": True, "readiness": True}
        self.takes = 0.0
        self.calls: list[tuple[str, float]] = []

    async def exec_fn(self, argv, timeout):
        kind = argv[1]
        self.calls.append((kind, self.clock.now() - 1000))
        if self.takes:
            await self.clock.sleep(self.takes)
        state = self.healthy[kind]
        if state == "timeout":
            raise TimeoutError("killed")
        return (0, b"ok") if state else (1, f"{kind} is sick\n".encode())

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.calls if k == kind]

    def handlers(self) -> Handlers:
        return Handlers(self.exec_fn, lambda: "127.0.0.1", self.clock)


def probe(kind: str, **fields) -> dict:
    return {"exec": {"command": ["check", kind]}, **fields}


async def settle() -> None:
    """Let every task run until it blocks (all in memory: a bounded number of turns is enough)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Move the clock `seconds` forward, one `step` at a time, letting the workers run in between."""
    await settle()
    moved = 0.0
    while moved < seconds:
        clock.advance(step)
        moved += step
        await settle()


def probes_of(container_spec: dict, fake: FakeContainer, **kw):
    results, failures = [], []
    probes = ContainerProbes(container_spec, fake.handlers(), fake.clock,
                             lambda kind, ok, message: results.append((kind, ok, message)),
                             on_failure=lambda kind, message: failures.append((kind, message)), **kw)
    return probes, results, failures


def test_readiness_flips_only_after_the_thresholds_and_reports_only_flips():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        spec = {"name": "web", "readinessProbe": probe("readiness", periodSeconds=5, successThreshold=2,
                                                       failureThreshold=3)}
        probes, results, failures = probes_of(spec, fake)
        assert (probes.started, probes.ready) == (True, False)
        probes.start()
        await settle()
        assert results == [] and not probes.ready                 # one success of the two needed
        await advance(clock, 5)
        assert results == [("readiness", True, "ok")] and probes.ready
        await advance(clock, 5)
        assert len(results) == 1                                   # still ready: no call
        fake.healthy["readiness"] = False
        await advance(clock, 10)
        assert len(results) == 1 and probes.ready                  # two failures of the three
        await advance(clock, 5)
        assert results[-1] == ("readiness", False, "readiness is sick") and not probes.ready
        await advance(clock, 10)
        assert len(results) == 2
        assert failures == [("readiness", "readiness is sick")] * 5   # one per failed probe
        assert fake.times("readiness") == [0, 5, 10, 15, 20, 25, 30, 35]
        await probes.stop()
    asyncio.run(scenario())


def test_readiness_recovers_after_failing():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.healthy["readiness"] = False
        probes, results, _ = probes_of({"readinessProbe": probe("readiness", periodSeconds=1, failureThreshold=1)}, fake)
        probes.start()
        await advance(clock, 3)
        assert results == [] and not probes.ready    # initially not ready: failing changes nothing
        fake.healthy["readiness"] = True
        await advance(clock, 1)
        assert results == [("readiness", True, "ok")] and probes.ready
        await probes.stop()
    asyncio.run(scenario())


def test_first_probe_waits_for_the_initial_delay_then_runs_each_period():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        probes, _, _ = probes_of({"livenessProbe": probe("liveness", initialDelaySeconds=7)}, fake)
        probes.start()
        await advance(clock, 6)
        assert fake.calls == []
        await advance(clock, 21)
        assert fake.times("liveness") == [7, 17, 27]               # periodSeconds defaults to 10
        await probes.stop()
    asyncio.run(scenario())


def test_an_adopted_container_does_not_wait_the_initial_delay_again():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        probes, _, _ = probes_of({"livenessProbe": probe("liveness", initialDelaySeconds=30)}, fake, started_for=25)
        probes.start()
        await advance(clock, 5)
        assert fake.times("liveness") == [5]
        await probes.stop()
    asyncio.run(scenario())


def test_the_period_counts_from_the_start_of_the_previous_probe():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.takes = 3
        probes, _, _ = probes_of({"livenessProbe": probe("liveness", timeoutSeconds=20)}, fake)
        probes.start()
        await advance(clock, 25)
        assert fake.times("liveness") == [0, 10, 20]
        fake.takes = 12                                            # longer than the period:
        await advance(clock, 40)                                   # the next one starts right away
        assert fake.times("liveness") == [0, 10, 20, 30, 42, 54]
        await probes.stop()
    asyncio.run(scenario())


def test_a_probe_that_times_out_is_a_failure_and_liveness_failure_stops_probing():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.healthy["liveness"] = "timeout"
        probes, results, failures = probes_of(
            {"livenessProbe": probe("liveness", periodSeconds=2, timeoutSeconds=1)}, fake)
        probes.start()
        await advance(clock, 3)
        assert results == []                                       # two failures of the three
        await advance(clock, 1)
        assert results == [("liveness", False, 'command "check liveness" timed out')]
        await advance(clock, 20)
        assert fake.times("liveness") == [0, 2, 4]                 # on hold: the container is to be killed
        assert len(failures) == 3
        await probes.stop()
    asyncio.run(scenario())


def test_startup_gates_liveness_and_readiness():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.healthy["startup"] = False
        spec = {"startupProbe": probe("startup", periodSeconds=1, failureThreshold=30),
                "livenessProbe": probe("liveness", periodSeconds=3),
                "readinessProbe": probe("readiness", periodSeconds=3)}
        probes, results, _ = probes_of(spec, fake)
        probes.start()
        await advance(clock, 5)
        assert fake.times("liveness") == fake.times("readiness") == []
        assert (probes.started, probes.ready, results) == (False, False, [])
        fake.healthy["startup"] = True
        await advance(clock, 1)
        assert results[0] == ("startup", True, "ok") and probes.started
        assert results[1:] == [("readiness", True, "ok")] and probes.ready
        assert fake.times("liveness") == fake.times("readiness") == [6]
        await advance(clock, 6)
        assert fake.times("startup") == [0, 1, 2, 3, 4, 5, 6]       # not probed once started
        assert fake.times("liveness") == [6, 9, 12]
        await probes.stop()
    asyncio.run(scenario())


def test_startup_that_never_succeeds_asks_for_a_restart_and_liveness_never_runs():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.healthy["startup"] = False
        spec = {"startupProbe": probe("startup", periodSeconds=1, failureThreshold=3),
                "livenessProbe": probe("liveness", periodSeconds=1)}
        probes, results, _ = probes_of(spec, fake)
        probes.start()
        await advance(clock, 10)
        assert results == [("startup", False, "startup is sick")]
        assert fake.times("startup") == [0, 1, 2] and fake.times("liveness") == []
        assert not probes.started
        await probes.stop()
    asyncio.run(scenario())


def test_without_a_readiness_probe_the_container_is_ready_once_started():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        bare, _, _ = probes_of({"name": "plain"}, fake)
        assert (bare.started, bare.ready) == (True, True)
        bare.start()
        await bare.stop()
        fake.healthy["startup"] = False
        probes, results, _ = probes_of({"startupProbe": probe("startup", periodSeconds=1, failureThreshold=5)}, fake)
        probes.start()
        await advance(clock, 2)
        assert not probes.ready
        fake.healthy["startup"] = True
        await advance(clock, 1)
        assert probes.ready and results == [("startup", True, "ok")]
        await probes.stop()
    asyncio.run(scenario())


def test_stop_ends_every_worker_and_no_callback_follows():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.takes = 1
        spec = {"livenessProbe": probe("liveness", periodSeconds=1, failureThreshold=1),
                "readinessProbe": probe("readiness", periodSeconds=1)}
        probes, results, failures = probes_of(spec, fake)
        probes.start()
        await settle()                                   # both probes are in flight
        fake.healthy["liveness"] = False
        await probes.stop()
        calls = len(fake.calls)
        await advance(clock, 5)
        assert (len(fake.calls), results, failures) == (calls, [], [])
        await probes.stop()                              # twice is fine
    asyncio.run(scenario())


def test_probe_settings_default_as_kubernetes_does():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.healthy["liveness"] = False
        changes = []
        worker = ProbeWorker("liveness", probe("liveness", periodSeconds=0, failureThreshold=0), {},
                             fake.handlers(), changes.append, clock)
        assert worker.result is True
        task = asyncio.ensure_future(worker.run())
        await advance(clock, 20)
        assert fake.times("liveness") == [0, 10, 20] and changes == [HandlerResult(False, "liveness is sick")]
        await task                                       # liveness failed: the worker returned
    asyncio.run(scenario())


def test_unknown_probe_kind_and_event_text():
    with pytest.raises(ValueError):
        ProbeWorker("sanity", {}, {}, None, print, FakeClock())
    assert failure_message("liveness", "HTTP probe failed with statuscode: 500") == \
        "Liveness probe failed: HTTP probe failed with statuscode: 500"


def test_cancel_stops_at_once_without_waiting():
    async def scenario():
        clock = FakeClock()
        fake = FakeContainer(clock)
        fake.takes = 1
        fake.healthy["liveness"] = False
        probes, results, failures = probes_of(
            {"livenessProbe": probe("liveness", periodSeconds=1, failureThreshold=1)}, fake)
        probes.start()
        await settle()                                   # the probe is in flight
        clock.advance(1)                                 # its answer is due...
        probes.cancel()                                  # ... but the container is being stopped
        await advance(clock, 3)
        assert (results, failures, fake.times("liveness")) == ([], [], [0])
    asyncio.run(scenario())
