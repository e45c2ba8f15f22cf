"""One worker per pod: it keeps only the latest desired spec and moves the pod through an
explicit lifecycle (Kubernetes' pod_workers.go):

    SYNCING ──(deleted, or removed from the API)──► TERMINATING ──► TERMINATED

never back. While SYNCING, each pass (a `sync`) makes the runtime match the spec: volumes,
then the sandbox, then the init containers in order, then the app containers, restarting
what exited as the restartPolicy says with Kubernetes' back-off. Passes are triggered by
events only — a new spec, a container exit (inotify on the runtime's exit records), a probe
result, a back-off that expired — never by polling. After each pass the pod's status is
computed from what was observed and handed to the status manager, which writes it when it
changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from signal import SIGTERM
from typing import Any, Callable, Optional

from pkube.client.timefmt import rfc3339
from pkube.kubelet import podstatus
from pkube.kubelet.backoff import RestartBackoff
from pkube.kubelet.containers import (CONTAINER_ATTEMPT, CONTAINER_HASH, SANDBOX_ATTEMPT, AdoptedPod, PodRuntime,
                                container_hash)
from pkube.kubelet.errors import PodSetupError

log = logging.getLogger(__name__)

SYNCING, TERMINATING, TERMINATED = "syncing", "terminating", "terminated"
DEFAULT_GRACE_SECONDS = 30
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
KEPT_INSTANCES = 2            # the current instance and the previous one (logs --previous)


@dataclass
class Services:
    """What every worker shares, injected by the Kubelet."""

    pods: PodRuntime
    run: Callable                      # await run(fn, *args): fn in the kubelet's threads
    report: Callable                   # report(pod, status): the status manager
    event: Callable                    # event(pod, type, reason, message)
    watch_exit: Callable               # watch_exit(container_id, uid): exits of it wake the worker
    exit_of: Callable                  # exit_of(container_id) -> a Future done at its next exit event
    finished: Callable                 # await finished(pod): the pod is gone from the node
    prepare: Any                       # kubelet.setup.PodSetup: volumes, env, images, probes
    host_ip: str
    clock: Callable[[], float] = time.monotonic
    admit: Optional[asyncio.Semaphore] = None   # start slots for pods' first passes (None: no limit)


def parse_time(text: str) -> Optional[dt.datetime]:
    if not text or text.startswith("0001"):
        return None
    try:
        return dt.datetime.fromisoformat(text[:19] + "+00:00")
    except ValueError:
        return None


def ran_for(record) -> float:
    started, finished = parse_time(record.started_at), parse_time(record.finished_at)
    return (finished - started).total_seconds() if started and finished else 0.0


def _spec_changed(record, container: dict) -> bool:
    recorded = record.labels.get(CONTAINER_HASH)
    return recorded is not None and recorded != container_hash(container)


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


class ContainerTrack:
    """The worker's knowledge of one container: its instances (newest first), why it waits,
    its back-off and probe results."""

    def __init__(self, name: str):
        self.name = name
        self.instances: list = []
        self.waiting: Optional[tuple[str, str]] = None
        self.backoff = RestartBackoff()
        self.seen_exit: Optional[str] = None      # id of the instance whose exit was counted
        self.ready = False
        self.started: Optional[bool] = None
        self.unhealthy: Optional[str] = None      # a liveness failure asked for a restart
        self.probes = None
        self.probed: Optional[str] = None         # id of the instance whose probes were started
        self.messages: dict[str, str] = {}         # instance id -> its termination message
        self.setup_failed: Optional[tuple[str, str]] = None   # why the last start could not even begin

    @property
    def current(self):
        return self.instances[0] if self.instances else None

    @property
    def attempt(self) -> int:
        return int(self.current.labels.get(CONTAINER_ATTEMPT, 0)) if self.current is not None else -1

    def view(self, image: str) -> podstatus.ContainerView:
        return podstatus.ContainerView(
            name=self.name, image=image, current=self.current,
            previous=self.instances[1] if len(self.instances) > 1 else None,
            restart_count=max(0, self.attempt), waiting=self.waiting, ready=self.ready, started=self.started,
            messages=self.messages)


class PodWorker:
    """The worker of one pod (by uid). `update` hands it a new spec, `remove` says the pod
    is gone from every source; `wake` asks for a pass (an exit, a probe result)."""

    def __init__(self, pod: dict, services: Services, adopted: Optional[AdoptedPod] = None):
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.s = services
        self.state = SYNCING
        self.removed = False
        self.sandbox = None
        self.sandbox_attempt = -1
        self.tracks: dict[str, ContainerTrack] = {}
        self.start_time = ""
        self.deadline_exceeded = False
        self.active_since: Optional[float] = None   # monotonic time the pod became active here
        self.volumes_ready = False
        self._wake = asyncio.Event()
        self._timer: Optional[asyncio.TimerHandle] = None
        if adopted is not None:
            self._adopt(adopted)
        self._wake.set()

    # ----- inputs -----

    def update(self, pod: dict) -> None:
        """A newer spec (or status/metadata) of the pod: the latest one wins."""
        self.pod = pod
        self._wake.set()

    def remove(self) -> None:
        """The pod no longer exists in any source: terminate and clean up."""
        self.removed = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _wake_in(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._wake.set)

    # ----- adoption after a kubelet restart -----

    def _adopt(self, adopted: AdoptedPod) -> None:
        """Take over what a previous kubelet started: nothing is restarted."""
        if adopted.sandboxes:
            self.sandbox = adopted.sandboxes[0]
            self.sandbox_attempt = int(self.sandbox.labels.get(SANDBOX_ATTEMPT, 0))
            self.start_time = podstatus.k8s_time(self.sandbox.started_at)
            self.s.watch_exit(self.sandbox.id, self.uid)
        for name, records in adopted.containers.items():
            track = self._track(name)
            track.instances = list(records)   # an exited current one is observed at the first pass
            if track.current is not None:
                self.s.watch_exit(track.current.id, self.uid)
            track.started = podstatus.is_running(track.current)
        self.volumes_ready = False   # set up again: idempotent, refreshes secrets

    def _track(self, name: str) -> ContainerTrack:
        if name not in self.tracks:
            self.tracks[name] = ContainerTrack(name)
        return self.tracks[name]

    # ----- the loop -----

    async def run(self) -> None:
        """Run passes until the pod is terminated and cleaned up."""
        while self.state != TERMINATED:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:   # noqa: BLE001 - a worker never dies; the next event retries
                log.exception("pod %s: sync failed", self.key())
                self._wake_in(5)
        await self.s.finished(self.pod)

    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta.get('namespace')}/{meta['name']}"

    async def sync_once(self) -> None:
        """One pass: terminate a removed or deleted pod, or bring its containers towards the spec
        (restarts, deadline, finished pod), then report its status. run() calls it on each wake-up."""
        if self.removed or (self.pod["metadata"].get("deletionTimestamp") and self.state == SYNCING):
            await self._terminate()
            return
        await self._refresh_instances()
        if not self.deadline_exceeded and self._past_deadline():
            await self._fail_deadline()
        if self.deadline_exceeded or self._terminal_phase():
            await self._stop_finished_pod()
        else:
            await self._admitted_sync()
        self._report()

    def _past_deadline(self) -> bool:
        """activeDeadlineSeconds: True once the pod has been active here that long; else a
        wake-up is set for when it will be."""
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if not deadline:
            return False
        if self.active_since is None:
            self.active_since = self.s.clock()
        left = self.active_since + float(deadline) - self.s.clock()
        if left > 0:
            self._wake_in(left)
            return False
        return True

    async def _fail_deadline(self) -> None:
        self.deadline_exceeded = True
        self.s.event(self.pod, "Normal", "DeadlineExceeded", DEADLINE_MESSAGE)
        await asyncio.gather(*(self._stop_instance(self._container_spec(t.name) or {"name": t.name}, t, self.grace())
                               for t in self.tracks.values() if podstatus.is_running(t.current)))
        await self._refresh_instances()

    # ----- sync -----

    async def _admitted_sync(self) -> None:
        """A pod's first pass (no sandbox yet) waits for one of the kubelet's start slots, so a
        burst of new pods gets whole pods running in turn instead of every sandbox first and
        every container last (100 pods at once: p50 about 30 % lower, measured)."""
        if self.sandbox is not None or self.s.admit is None:
            await self._sync()
            return
        async with self.s.admit:
            await self._sync()

    async def _sync(self) -> None:
        if not await self._ensure_volumes():
            return
        if not await self._ensure_sandbox():
            return
        spec = self.pod.get("spec") or {}
        for container in spec.get("initContainers") or []:
            if not await self._step_init(container):
                return
        for container in spec.get("containers") or []:
            await self._step_container(container, restartable=True)

    async def _ensure_volumes(self) -> bool:
        if self.volumes_ready:
            if await self.s.prepare.refresh_volumes(self.pod):
                log.info("pod %s: volume contents updated", self.key())
            return True
        try:
            await self.s.prepare.setup_volumes(self.pod)
        except PodSetupError as err:
            self._hold_all(("ContainerCreating", ""))
            self.s.event(self.pod, "Warning", err.reason, f"MountVolume.SetUp failed: {err}")
            self._wake_in(5)
            return False
        self.volumes_ready = True
        return True

    def _hold_all(self, waiting: tuple[str, str]) -> None:
        spec = self.pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            track = self._track(c["name"])
            if track.current is None:
                track.waiting = waiting

    async def _ensure_sandbox(self) -> bool:
        """A running sandbox; a dead one is replaced and every container restarted in the new one."""
        if self.sandbox is not None:
            self.sandbox = await self.s.run(self.s.pods.get, self.sandbox.id)
            if self.sandbox is not None and podstatus.is_running(self.sandbox):
                return True
            await self._kill_all_containers("the pod sandbox changed")
        self.sandbox_attempt += 1
        try:
            self.sandbox = await self.s.run(self.s.pods.start_sandbox, self.pod, self.sandbox_attempt)
        except Exception as err:   # noqa: BLE001 - reported on the pod, retried
            self.sandbox = None
            self.s.event(self.pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {err}")
            self._hold_all(("ContainerCreating", ""))
            self._wake_in(5)
            return False
        self.s.watch_exit(self.sandbox.id, self.uid)
        self.wake()   # as for containers: a death before the watch sends no event
        if not self.start_time:
            self.start_time = rfc3339(dt.datetime.now(dt.timezone.utc))
        return True

    async def _kill_all_containers(self, why: str) -> None:
        for track in self.tracks.values():
            if podstatus.is_running(track.current):
                self.s.event(self.pod, "Normal", "Killing", f"Stopping container {track.name}: {why}")
                await self.s.run(self.s.pods.kill, track.current.id)
        await self._refresh_instances()

    async def _step_init(self, container: dict) -> bool:
        """Drive one init container; True when it has succeeded (go on to the next)."""
        track = self._track(container["name"])
        current = track.current
        if podstatus.is_running(current):
            return False
        if podstatus.has_exited(current) and current.exit_code == 0 and track.waiting is None:
            return True
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        if podstatus.has_exited(current) and policy == "Never":
            return False
        await self._start_or_back_off(container, track)
        return False

    async def _step_container(self, container: dict, restartable: bool) -> None:
        track = self._track(container["name"])
        current = track.current
        if podstatus.is_running(current):
            if track.probed != current.id:      # adopted from a previous kubelet
                track.probed = current.id
                self.s.prepare.start_probes(self, container, track, started_for=podstatus.running_for(current))
            if _spec_changed(current, container):
                await self._replace_changed(container, track)
                return
            if not track.unhealthy:
                return
            await self._kill_unhealthy(container, track)
            current = track.current
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        if podstatus.has_exited(current) and not should_restart(policy, current.exit_code):
            track.waiting = None
            return
        await self._start_or_back_off(container, track)

    async def _replace_changed(self, container: dict, track: ContainerTrack) -> None:
        """The container's spec changed (a new image): stop it and start the new one at once."""
        self.s.event(self.pod, "Normal", "Killing", f"Container {track.name} definition changed, will be restarted")
        await self._stop_instance(container, track, self.grace())
        await self._refresh_track(track)
        track.backoff = RestartBackoff()
        await self._start_instance(container, track)

    async def _kill_unhealthy(self, container: dict, track: ContainerTrack) -> None:
        """A liveness (or startup) probe failed: stop the instance; the restartPolicy then says
        whether it comes back."""
        track.unhealthy = None
        self.s.event(self.pod, "Normal", "Killing",
                     f"Container {track.name} failed liveness probe, will be restarted")
        await self._stop_instance(container, track, self.grace())
        await self._refresh_track(track)

    async def _start_or_back_off(self, container: dict, track: ContainerTrack) -> None:
        now = self.s.clock()
        left = track.backoff.waiting(now)
        if left > 0 and track.setup_failed is not None:   # keep saying why, as Kubernetes does
            reason, message = track.setup_failed
            if reason == "ErrImagePull":
                reason, message = "ImagePullBackOff", f'Back-off pulling image "{container.get("image", "")}"'
            track.waiting = (reason, message)
            self._wake_in(left)
            return
        if left > 0:
            meta = self.pod["metadata"]
            if not track.waiting or track.waiting[0] != "CrashLoopBackOff":
                self.s.event(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {track.name} "
                             f"in pod {meta['name']}_{meta.get('namespace')}({self.uid})")
            track.waiting = ("CrashLoopBackOff",
                             f"back-off {int(track.backoff.last_wait)}s restarting failed container={track.name} "
                             f"pod={meta['name']}_{meta.get('namespace')}({self.uid})")
            self._wake_in(left)
            return
        await self._start_instance(container, track)

    async def _start_instance(self, container: dict, track: ContainerTrack) -> None:
        """Start the next instance of `container`; on failure the reason is shown in its
        waiting state and a retry is scheduled with back-off."""
        attempt = track.attempt + 1
        try:
            image, env, mounts = await self.s.prepare.container_inputs(self.pod, container, self.sandbox, attempt)
        except PodSetupError as err:
            track.waiting = track.setup_failed = (err.reason, str(err))
            if err.reason == "ErrImagePull":
                self.s.event(self.pod, "Normal", "BackOff", f'Back-off pulling image "{container.get("image", "")}"')
            self.s.event(self.pod, "Warning", "Failed", f"Error: {err}")
            track.backoff.on_exit(self.s.clock(), 0)
            self._wake_in(max(1.0, track.backoff.waiting(self.s.clock())))
            return
        try:
            record = await self.s.run(self.s.pods.start_container, self.pod, container, self.sandbox, attempt,
                                      image=image, env=env, mounts=mounts)
        except Exception as err:   # noqa: BLE001 - StartError and kin: reported, retried
            await self._failed_start(container, track, attempt, err)
            return
        self._started(container, track, record)
        if (container.get("lifecycle") or {}).get("postStart") and podstatus.is_running(record):
            if not await self.s.prepare.post_start(self, container, track):
                await self.s.run(self.s.pods.kill, record.id)
                await self._refresh_track(track)

    async def _failed_start(self, container: dict, track: ContainerTrack, attempt: int, err: Exception) -> None:
        message = str(err)
        self.s.event(self.pod, "Warning", "Failed", f"Error: {message}")
        track.waiting = ("RunContainerError", message)
        await self._refresh_instances_after_create(track, attempt)
        track.backoff.on_exit(self.s.clock(), 0)
        self._wake_in(max(1.0, track.backoff.waiting(self.s.clock())))

    async def _refresh_instances_after_create(self, track: ContainerTrack, attempt: int) -> None:
        """A failed start leaves an exited record: find it so the attempt counts."""
        adopted = await self.s.run(self.s.pods.instances, self.uid, track.name)
        if adopted:
            track.instances = adopted[:KEPT_INSTANCES]
            track.seen_exit = track.current.id if track.current is not None else None

    def _started(self, container: dict, track: ContainerTrack, record) -> None:
        track.setup_failed = None
        track.instances = [record, *track.instances][:KEPT_INSTANCES + 1]
        self._drop_old_instances(track)
        track.waiting = None
        track.ready = False
        track.started = True
        self.s.watch_exit(record.id, self.uid)
        self.s.event(self.pod, "Normal", "Created", f"Created container: {track.name}")
        self.s.event(self.pod, "Normal", "Started", f"Started container {track.name}")
        track.probed = record.id
        self.s.prepare.start_probes(self, container, track)
        self.wake()   # one more look once the exit is watched: an exit before the watch sends no event

    def _drop_old_instances(self, track: ContainerTrack) -> None:
        for old in track.instances[KEPT_INSTANCES:]:
            asyncio.ensure_future(self.s.run(self.s.pods.remove, old.id))
        track.instances = track.instances[:KEPT_INSTANCES]

    # ----- what the runtime says -----

    async def _refresh_instances(self) -> None:
        for track in self.tracks.values():
            await self._refresh_track(track)

    async def _refresh_track(self, track: ContainerTrack) -> None:
        """Re-read a running instance's record; an exit not seen before (also one that came
        before the start returned) reads the termination message and arms the back-off."""
        current = track.current
        if current is None:
            return
        if podstatus.is_running(current):
            current = await self.s.run(self.s.pods.get, current.id)
            if current is None:
                track.instances.pop(0)
                return
            track.instances[0] = current
        if podstatus.has_exited(current) and track.seen_exit != current.id:
            track.seen_exit = current.id
            await self._read_message(track, current)
            track.ready = False
            track.started = False
            track.backoff.on_exit(self.s.clock(), ran_for(current))
            self.s.prepare.stop_probes(track)

    async def _read_message(self, track: ContainerTrack, record) -> None:
        container = self._container_spec(track.name)
        if container is not None:
            attempt = int(record.labels.get(CONTAINER_ATTEMPT, 0))
            track.messages = {k: v for k, v in track.messages.items() if k in {r.id for r in track.instances}}
            track.messages[record.id] = await self.s.run(self.s.prepare.termination_message, self.pod, container,
                                                         record, attempt)

    def _container_spec(self, name: str) -> Optional[dict]:
        spec = self.pod.get("spec") or {}
        return next((c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                     if c["name"] == name), None)

    # ----- finished pods -----

    def _terminal_phase(self) -> bool:
        init_views, views = self._views()
        phase = podstatus.pod_phase(self.pod, init_views, views)
        return phase in ("Succeeded", "Failed")

    async def _stop_finished_pod(self) -> None:
        """All containers are done for good: the sandbox goes, the records stay (logs)."""
        if self.sandbox is not None and podstatus.is_running(self.sandbox):
            await self.s.run(self.s.pods.stop, self.sandbox.id, 0)
            self.sandbox = await self.s.run(self.s.pods.get, self.sandbox.id)

    # ----- termination -----

    def grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        return float(grace)

    async def _terminate(self) -> None:
        """preStop hooks, then SIGTERM, SIGKILL at the end of the grace period; then the pod's
        sandbox, containers and volumes go, and the API object is deleted."""
        self.state = TERMINATING
        grace = self.grace()
        spec = self.pod.get("spec") or {}
        containers = {c["name"]: c for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
        await asyncio.gather(*(self._stop_instance(containers.get(t.name, {"name": t.name}), t, grace)
                               for t in self.tracks.values() if podstatus.is_running(t.current)))
        if self.sandbox is not None:
            await self.s.run(self.s.pods.remove_sandbox, self.sandbox.id)
        for track in self.tracks.values():
            for record in track.instances:
                await self.s.run(self.s.pods.remove, record.id)
        await self.s.prepare.teardown(self.pod)
        self.state = TERMINATED

    async def _stop_instance(self, container: dict, track: ContainerTrack, grace: float) -> None:
        self.s.prepare.stop_probes(track)
        deadline = self.s.clock() + grace
        if container.get("lifecycle", {}).get("preStop"):
            await self.s.prepare.pre_stop(self, container, grace)
        self.s.event(self.pod, "Normal", "Killing", f"Stopping container {track.name}")
        cid = track.current.id
        exited = self.s.exit_of(cid)       # registered before the signal: no exit can slip by
        await self.s.run(self.s.pods.signal, cid, SIGTERM)
        if not await self._exited_within(cid, exited, deadline - self.s.clock()):
            await self.s.run(self.s.pods.kill, cid)

    async def _exited_within(self, cid: str, exited: asyncio.Future, seconds: float) -> bool:
        """True once `cid` has exited (its exit event, or a record that already says so),
        False after `seconds`. No runtime thread waits meanwhile: a terminating pod must not
        hold up other pods' starts for its grace period."""
        record = await self.s.run(self.s.pods.get, cid)
        if record is None or not podstatus.is_running(record):
            return True
        try:
            await asyncio.wait_for(asyncio.shield(exited), max(0.0, seconds))
            return True
        except TimeoutError:
            return False

    # ----- status -----

    def _views(self):
        spec = self.pod.get("spec") or {}
        init = [self._track(c["name"]).view(c.get("image", "")) for c in spec.get("initContainers") or []]
        main = [self._track(c["name"]).view(c.get("image", "")) for c in spec.get("containers") or []]
        return init, main

    def pod_ip(self) -> str:
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            return self.s.host_ip
        return ((self.sandbox.endpoint if self.sandbox is not None else None) or {}).get("ip", "")

    def _report(self) -> None:
        init_views, views = self._views()
        now = rfc3339(dt.datetime.now(dt.timezone.utc))
        status = podstatus.pod_status(
            self.pod, init_views=init_views, views=views, pod_ip=self.pod_ip(), host_ip=self.s.host_ip,
            sandbox_ready=self.sandbox is not None and podstatus.is_running(self.sandbox),
            start_time=self.start_time or now, now=now,
            **({"phase": "Failed", "reason": "DeadlineExceeded", "message": DEADLINE_MESSAGE}
               if self.deadline_exceeded else {}))
        self.s.report(self.pod, status)
