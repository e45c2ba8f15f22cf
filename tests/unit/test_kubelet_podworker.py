"""The pod worker's state machine on a fake runtime (the real one is exercised by the e2e
tests in tests/e2e/test_kubelet_pods.py): ordering, restart policies, back-off, setup errors,
termination."""

from __future__ import annotations

import asyncio
import itertools

from pkube.kubelet.errors import ConfigError
from pkube.kubelet.podworker import TERMINATED, PodWorker, Services
from pkube.runtime.state import ContainerState

NOW = "2026-12-04T10:00:00.000000000Z"


class FakePods:
    """PodRuntime's contract in memory: records are runtime ContainerStates."""

    def __init__(self):
        self.records: dict[str, ContainerState] = {}
        self.started: list[str] = []
        self.signalled: list = []
        self.ids = itertools.count()
        self.network_ready = True

    def _copy(self, record):
        return ContainerState.from_json(record.to_json())   # the runtime hands out fresh records

    def _new(self, kind, labels):
        cid = f"{kind}{next(self.ids)}"
        record = ContainerState(id=cid, name=cid, image="busybox", image_id="x", kind=kind, status="running",
                                started_at=NOW, labels=labels, endpoint={"ip": "10.244.0.9"})
        self.records[cid] = record
        return self._copy(record)

    def start_sandbox(self, pod, attempt):
        return self._new("sandbox", {"io.kubernetes.sandbox.attempt": str(attempt)})

    def start_container(self, pod, container, sandbox, attempt, *, image, env, mounts):
        self.started.append(container["name"])
        return self._new("container", {"io.kubernetes.container.name": container["name"],
                                       "io.kubernetes.container.attempt": str(attempt)})

    def exit(self, name, code):
        record = next(r for r in reversed(list(self.records.values()))
                      if r.labels.get("io.kubernetes.container.name") == name)
        record.status, record.exit_code, record.finished_at = "exited", code, NOW

    def get(self, cid):
        return self._copy(self.records[cid]) if cid in self.records else None

    def stop(self, cid, timeout):
        self.records[cid].status = "exited"

    kill = lambda self, cid: self.stop(cid, 0)   # noqa: E731

    def signal(self, cid, signal):
        self.signalled.append((cid, signal))

    def remove(self, cid):
        self.records.pop(cid, None)

    def remove_sandbox(self, sid):
        self.records.pop(sid, None)

    def instances(self, uid, name):
        return []


class FakePrepare:
    def __init__(self):
        self.fail_with = None
        self.torn_down = False

    async def setup_volumes(self, pod):
        pass

    async def refresh_volumes(self, pod):
        return False

    async def container_inputs(self, pod, container, sandbox, attempt):
        if self.fail_with:
            raise self.fail_with
        return "busybox", {}, []

    def start_probes(self, worker, container, track, started_for=0.0):
        track.ready, track.started = True, True

    def stop_probes(self, track):
        pass

    def termination_message(self, pod, container, record, attempt):
        return ""

    async def teardown(self, pod):
        self.torn_down = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_worker(spec: dict):
    pods, prepare, clock = FakePods(), FakePrepare(), Clock()
    reports, events, finished = [], [], []

    async def run(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def done(pod):
        finished.append(pod)

    services = Services(pods=pods, run=run, report=lambda pod, status: reports.append(status),
                        event=lambda pod, t, reason, message: events.append(reason),
                        watch_exit=lambda cid, uid: None, exit_of=lambda cid: asyncio.get_running_loop().create_future(),
                        finished=done, prepare=prepare, host_ip="192.0.2.2",
                        clock=clock)
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec}
    return PodWorker(pod, services), pods, prepare, clock, reports, events, finished


def containers(*names, command=("sleep", "1")):
    return [{"name": n, "image": "busybox", "command": list(command)} for n in names]


def run(coro):
    return asyncio.run(coro)


def test_init_containers_run_one_at_a_time_before_the_app():
    async def scenario():
        worker, pods, _, _, reports, _, _ = make_worker(
            {"initContainers": containers("one", "two"), "containers": containers("app")})
        await worker.sync_once()
        assert pods.started == ["one"] and reports[-1]["phase"] == "Pending"
        pods.exit("one", 0)
        await worker.sync_once()
        assert pods.started == ["one", "two"]
        pods.exit("two", 0)
        await worker.sync_once()
        assert pods.started == ["one", "two", "app"] and reports[-1]["phase"] == "Running"
    run(scenario())


def test_restart_policies():
    async def scenario(policy, code):
        worker, pods, *_ = make_worker({"restartPolicy": policy, "containers": containers("app")})
        await worker.sync_once()
        pods.exit("app", code)
        await worker.sync_once()
        return pods.started.count("app")
    assert run(scenario("Never", 1)) == 1
    assert run(scenario("OnFailure", 0)) == 1
    assert run(scenario("OnFailure", 1)) == 2
    assert run(scenario("Always", 0)) == 2


def test_the_second_crash_waits_ten_seconds_in_crash_loop_back_off():
    async def scenario():
        worker, pods, _, clock, reports, events, _ = make_worker({"containers": containers("app")})
        await worker.sync_once()
        pods.exit("app", 1)
        await worker.sync_once()                       # first restart: at once
        assert pods.started == ["app", "app"]
        pods.exit("app", 1)
        await worker.sync_once()
        assert pods.started == ["app", "app"]
        waiting = reports[-1]["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] == "CrashLoopBackOff" and waiting["message"].startswith("back-off 10s")
        assert "BackOff" in events
        clock.now += 10
        await worker.sync_once()
        assert pods.started == ["app"] * 3 and reports[-1]["containerStatuses"][0]["restartCount"] == 2
    run(scenario())


def test_a_setup_error_is_shown_and_nothing_starts():
    async def scenario():
        worker, pods, prepare, _, reports, _, _ = make_worker({"containers": containers("app")})
        prepare.fail_with = ConfigError('secret "db" not found')
        await worker.sync_once()
        await worker.sync_once()                       # retried while backing off: still the same reason
        waiting = reports[-1]["containerStatuses"][0]["state"]["waiting"]
        assert waiting == {"reason": "CreateContainerConfigError", "message": 'secret "db" not found'}
        assert pods.started == []
    run(scenario())


def test_deletion_stops_everything_removes_it_and_finishes():
    async def scenario():
        worker, pods, prepare, _, _, events, finished = make_worker({"containers": containers("a", "b")})
        await worker.sync_once()
        worker.pod["metadata"]["deletionTimestamp"] = NOW
        worker.pod["metadata"]["deletionGracePeriodSeconds"] = 0
        await worker.sync_once()
        assert worker.state == TERMINATED and pods.records == {} and prepare.torn_down
        assert events.count("Killing") == 2 and [sig for _, sig in pods.signalled] == [15, 15]
    run(scenario())
