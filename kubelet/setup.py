"""What a pod worker needs besides the runtime: images, volumes, environment, probes and
lifecycle hooks, each from its own module, put together per pod.

`PodSetup` is shared by every worker of a kubelet; it keeps one `PodVolumes` per pod uid.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

from client.clock import Clock
from kubelet.envvars import container_env
from kubelet.errors import PodSetupError
from kubelet.handlers import Handlers, runtime_exec, run_hook
from kubelet.probes import ContainerProbes
from kubelet.volumes import PodVolumes

log = logging.getLogger(__name__)

BUILTIN_IMAGES = ("busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox")


class ImageError(PodSetupError):
    """The image cannot be had: ErrImagePull."""

    def __init__(self, message: str):
        super().__init__("ErrImagePull", message)


class PodSetup:
    """Images, volumes, env, probes and hooks for the pod workers of one kubelet.

    `objects` is the kubelet's ObjectSource (Secrets, ConfigMaps); `run` runs a blocking
    function in the kubelet's threads; `event(pod, type, reason, message)` records an Event.
    """

    def __init__(self, runtime, root_dir: str, node_name: str, objects, run: Callable, event: Callable,
                 host_ip: str, clock: Clock | None = None, allocatable: dict | None = None):
        self.runtime = runtime
        self.host_ip = host_ip
        self.root_dir = root_dir
        self.node_name = node_name
        self.objects = objects
        self.run = run
        self.event = event
        self.clock = clock or Clock()
        self.allocatable = allocatable or {}
        self._volumes: dict[str, PodVolumes] = {}

    # ----- volumes -----

    def pod_dir(self, pod: dict) -> str:
        return os.path.join(self.root_dir, "pods", pod["metadata"]["uid"])

    def volumes(self, pod: dict) -> PodVolumes:
        uid = pod["metadata"]["uid"]
        if uid not in self._volumes:
            self._volumes[uid] = PodVolumes(self.pod_dir(pod), self.objects, self.node_name)
        return self._volumes[uid]

    async def setup_volumes(self, pod: dict) -> None:
        await self.volumes(pod).setup(pod)

    async def refresh_volumes(self, pod: dict) -> bool:
        try:
            return await self.volumes(pod).refresh(pod)
        except PodSetupError as err:
            log.warning("pod %s: volume refresh: %s", pod["metadata"]["name"], err)
            return False

    async def teardown(self, pod: dict) -> None:
        volumes = self._volumes.pop(pod["metadata"]["uid"], None) or self.volumes(pod)
        await self.run(volumes.teardown)
        self._volumes.pop(pod["metadata"]["uid"], None)
        await self.run(_remove_tree, self.pod_dir(pod))

    # ----- containers -----

    async def container_inputs(self, pod: dict, container: dict, sandbox) -> tuple[str, dict, list]:
        """(image reference, environment, mounts) of one container; raises PodSetupError."""
        image = await self.ensure_image(pod, container)
        pod_ip = ((sandbox.endpoint if sandbox is not None else None) or {}).get("ip")
        env = await container_env(pod, container, self.objects, {}, allocatable=self.allocatable or None,
                                  pod_ips=[pod_ip] if pod_ip else None, host_ips=[self.host_ip])
        mounts = self.volumes(pod).mounts(pod, container, env)
        return image, env, mounts

    async def ensure_image(self, pod: dict, container: dict) -> str:
        """The image reference, pulled first when the policy asks for it; raises ImageError."""
        ref = container.get("image") or ""
        policy = container.get("imagePullPolicy") or ("Always" if _latest(ref) else "IfNotPresent")
        if ref in BUILTIN_IMAGES:
            return "busybox"
        present = await self.run(_has_image, self.runtime, ref)
        if present and policy != "Always":
            self.event(pod, "Normal", "Pulled", f'Container image "{ref}" already present on machine')
            return ref
        if policy == "Never":
            raise PodSetupError("ErrImageNeverPull",
                                f'Container image "{ref}" is not present with pull policy of Never')
        self.event(pod, "Normal", "Pulling", f'Pulling image "{ref}"')
        try:
            await self.run(_pull, self.runtime, ref)
        except Exception as err:   # noqa: BLE001 - any pull failure is ErrImagePull
            if present:
                self.event(pod, "Warning", "Failed", f'Failed to pull image "{ref}": {err}; using the local copy')
                return ref
            self.event(pod, "Warning", "Failed", f'Failed to pull image "{ref}": {err}')
            raise ImageError(f'failed to pull image "{ref}": {err}') from None
        self.event(pod, "Normal", "Pulled", f'Successfully pulled image "{ref}"')
        return ref

    # ----- probes and hooks -----

    def start_probes(self, worker, container: dict, track) -> None:
        """Probes of a freshly started instance; each change of a result wakes the worker."""
        if not any(container.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe")):
            track.ready, track.started = True, True
            return

        def on_result(kind: str, ok: bool, message: str) -> None:
            track.ready, track.started = probes.ready, probes.started
            if kind in ("liveness", "startup") and not ok:
                track.unhealthy = message
            worker.wake()

        def on_failure(kind: str, message: str) -> None:
            self.event(worker.pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}")

        probes = ContainerProbes(container, self._handlers(worker, track), self.clock, on_result,
                                 on_failure=on_failure)
        track.probes, track.ready, track.started = probes, probes.ready, probes.started
        probes.start()

    def stop_probes(self, track) -> None:
        """Stop an instance's probes (it exited or is being stopped); no result comes after."""
        probes, track.probes = track.probes, None
        if probes is not None:
            probes.cancel()
            asyncio.ensure_future(probes.stop())

    def _handlers(self, worker, track) -> Handlers:
        return Handlers(runtime_exec(self.runtime, track.current.id), worker.pod_ip, self.clock)

    async def pre_stop(self, worker, container: dict, grace: float) -> None:
        track = worker.tracks[container["name"]]
        result = await run_hook(self._handlers(worker, track), container, "preStop", grace, pod=worker.key())
        if result is not None and not result.ok:
            self.event(worker.pod, "Warning", "FailedPreStopHook", result.message)

    async def post_start(self, worker, container: dict, track) -> bool:
        """Run the postStart hook; False (and an Event) when it failed: the caller kills the
        container, which then restarts as its restartPolicy says."""
        result = await run_hook(self._handlers(worker, track), container, "postStart",
                                float(worker.grace()), pod=worker.key())
        if result is not None and not result.ok:
            self.event(worker.pod, "Warning", "FailedPostStartHook", result.message)
            return False
        return True


def _latest(ref: str) -> bool:
    name = ref.rsplit("/", 1)[-1]
    return "@" not in name and (":" not in name or name.endswith(":latest"))


def _has_image(runtime, ref: str) -> bool:
    from runtime.images import ImageError as RuntimeImageError
    try:
        runtime.image(ref)
        return True
    except RuntimeImageError:
        return False


def _pull(runtime, ref: str) -> None:
    from runtime.registry import pull
    pull(runtime.images, ref)


def _remove_tree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
