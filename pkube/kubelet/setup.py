"""What a pod worker needs besides the runtime: images, volumes, environment, probes and
lifecycle hooks, each from its own module, put together per pod.

`PodSetup` is shared by every worker of a kubelet; it keeps one `PodVolumes` per pod uid.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

from pkube.client.clock import Clock
from pkube.kubelet.envvars import container_env
from pkube.kubelet.containers import run_as_non_root_error, seccomp_error
from pkube.kubelet.errors import ConfigError, PodSetupError
from pkube.kubelet.etcfiles import hosts_file, resolv_conf
from pkube.kubelet.handlers import Handlers, runtime_exec, run_hook
from pkube.kubelet.probes import ContainerProbes
from pkube.kubelet.volumes import PodVolumes
from pkube.runtime.spec import Mount

log = logging.getLogger(__name__)

HOST_RESOLV_CONF = "/etc/resolv.conf"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
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
                 host_ip: str, clock: Clock | None = None, allocatable: dict | None = None,
                 cluster_dns: list[str] | None = None, cluster_domain: str = "cluster.local",
                 service_env=None):
        self.runtime = runtime
        self.host_ip = host_ip
        self.root_dir = root_dir
        self.node_name = node_name
        self.objects = objects
        self.run = run
        self.event = event
        self.clock = clock or Clock()
        self.allocatable = allocatable or {}
        self.cluster_dns = list(cluster_dns or [])
        self.image_gc = None            # a kubelet.imagegc.ImageGC told of every image a container uses
        self.tokens = None              # a kubelet.tokens.TokenManager (serviceAccountToken projections)
        self.cluster_domain = cluster_domain
        self.service_env = service_env  # a kubelet.serviceenv.ServiceEnv, or None (no service variables)
        self._volumes: dict[str, PodVolumes] = {}

    # ----- volumes -----

    def pod_dir(self, pod: dict) -> str:
        return os.path.join(self.root_dir, "pods", pod["metadata"]["uid"])

    def volumes(self, pod: dict) -> PodVolumes:
        uid = pod["metadata"]["uid"]
        if uid not in self._volumes:
            self._volumes[uid] = PodVolumes(self.pod_dir(pod), self.objects, self.node_name,
                                            allocatable=self.allocatable or None, tokens=self.tokens)
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
        if self.tokens is not None:
            self.tokens.forget(pod["metadata"]["uid"])
        await self.run(_remove_tree, self.pod_dir(pod))

    # ----- containers -----

    async def container_inputs(self, pod: dict, container: dict, sandbox, attempt: int) -> tuple[str, dict, list]:
        """(image reference, environment, mounts) of one attempt of a container; raises PodSetupError."""
        image = await self.ensure_image(pod, container)
        image_id, image_user = await self.run(_image_identity, self.runtime, image)
        if self.image_gc is not None:
            self.image_gc.notice(image_id)
        refusal = seccomp_error(container, pod) or run_as_non_root_error(container, pod, image_user)
        if refusal:
            raise ConfigError(refusal)
        pod_ip = ((sandbox.endpoint if sandbox is not None else None) or {}).get("ip")
        services = await self.service_env.env_for(pod) if self.service_env is not None else {}
        env = await container_env(pod, container, self.objects, services, allocatable=self.allocatable or None,
                                  pod_ips=[pod_ip] if pod_ip else None, host_ips=[self.host_ip])
        mounts = self.volumes(pod).mounts(pod, container, env)
        mounts += await self.run(self._pod_files, pod, container, pod_ip or self.host_ip, attempt)
        return image, env, mounts

    def _pod_files(self, pod: dict, container: dict, pod_ip: str, attempt: int) -> list[Mount]:
        """The kubelet-written files of one container attempt: /etc/hosts (not for hostNetwork
        pods), /etc/resolv.conf, and its termination-message file."""
        pod_dir = self.pod_dir(pod)
        os.makedirs(pod_dir, exist_ok=True)
        mounts = []
        if not (pod.get("spec") or {}).get("hostNetwork"):
            _write_if_changed(os.path.join(pod_dir, "etc-hosts"), hosts_file(pod, pod_ip, self.cluster_domain))
            mounts.append(Mount(os.path.join(pod_dir, "etc-hosts"), "/etc/hosts"))
        resolv = resolv_conf(pod, _read(HOST_RESOLV_CONF), self.cluster_dns, self.cluster_domain)
        _write_if_changed(os.path.join(pod_dir, "resolv.conf"), resolv)
        mounts.append(Mount(os.path.join(pod_dir, "resolv.conf"), "/etc/resolv.conf"))
        path = self.termination_log(pod, container["name"], attempt)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass
        mounts.append(Mount(path, container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH))
        return mounts

    def termination_log(self, pod: dict, container_name: str, attempt: int) -> str:
        return os.path.join(self.pod_dir(pod), "containers", container_name, f"{attempt}-termination-log")

    def termination_message(self, pod: dict, container: dict, record, attempt: int) -> str:
        """What an exited container left as its termination message: the file it wrote (4 KiB
        at most), or with FallbackToLogsOnError and a failure, the end of its log."""
        text = _read(self.termination_log(pod, container["name"], attempt))[:MAX_TERMINATION_MESSAGE]
        if text or record.exit_code == 0 or container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return text
        try:
            entries = self.runtime.logs(record.id, tail=FALLBACK_LOG_LINES)
        except Exception:   # noqa: BLE001 - no log, no message
            return ""
        return b"".join(e.data for e in entries).decode(errors="replace")[-FALLBACK_LOG_BYTES:]

    async def ensure_image(self, pod: dict, container: dict) -> str:
        """The image reference, pulled first when the policy asks for it; raises ImageError."""
        ref = container.get("image") or ""
        policy = container.get("imagePullPolicy") or ("Always" if _latest(ref) else "IfNotPresent")
        if ref in BUILTIN_IMAGES:
            self.event(pod, "Normal", "Pulled", f'Container image "{ref}" already present on machine')
            return "busybox"
        present = await self.run(_has_image, self.runtime, ref)
        if present and policy != "Always":
            self.event(pod, "Normal", "Pulled", f'Container image "{ref}" already present on machine')
            return ref
        if policy == "Never":
            raise PodSetupError("ErrImageNeverPull",
                                f'Container image "{ref}" is not present with pull policy of Never')
        self.event(pod, "Normal", "Pulling", f'Pulling image "{ref}"')
        credentials = await self._pull_credentials(pod)
        try:
            await self.run(_pull, self.runtime, ref, credentials)
        except Exception as err:   # noqa: BLE001 - any pull failure is ErrImagePull
            if present:
                self.event(pod, "Warning", "Failed", f'Failed to pull image "{ref}": {err}; using the local copy')
                return ref
            self.event(pod, "Warning", "Failed", f'Failed to pull image "{ref}": {err}')
            raise ImageError(f'failed to pull image "{ref}": {err}') from None
        self.event(pod, "Normal", "Pulled", f'Successfully pulled image "{ref}"')
        return ref

    async def _pull_credentials(self, pod: dict) -> dict[str, tuple[str, str]]:
        """registry -> (user, password) from the pod's imagePullSecrets (dockerconfigjson)."""
        namespace = pod["metadata"].get("namespace") or "default"
        credentials: dict[str, tuple[str, str]] = {}
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            secret = await self.objects.get("Secret", namespace, ref.get("name", ""))
            if secret is not None:
                credentials.update(docker_credentials(secret))
        return credentials

    # ----- probes and hooks -----

    def start_probes(self, worker, container: dict, track, started_for: float = 0.0) -> None:
        """Probes of a running instance (`started_for` seconds old: an adopted one does not wait
        its initial delay again); each change of a result wakes the worker."""
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
                                 on_failure=on_failure, started_for=started_for)
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


def _image_identity(runtime, ref: str) -> tuple[str, str]:
    """(image id, the user its config runs as)."""
    image = runtime.image(ref)
    return image.id, (image.config or {}).get("User") or ""


def _has_image(runtime, ref: str) -> bool:
    from pkube.runtime.errors import ImageError as RuntimeImageError
    try:
        runtime.image(ref)
        return True
    except RuntimeImageError:
        return False


def _pull(runtime, ref: str, credentials: dict) -> None:
    from pkube.runtime.registry import RegistryClient, pull
    with RegistryClient(credentials=credentials) as client:
        pull(runtime.images, ref, client=client)


def docker_credentials(secret: dict) -> dict[str, tuple[str, str]]:
    """registry -> (user, password) of a kubernetes.io/dockerconfigjson (or dockercfg) Secret."""
    import base64
    import json
    data = secret.get("data") or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        return {}
    try:
        config = json.loads(base64.b64decode(raw))
    except ValueError:
        return {}
    auths = config.get("auths", config) if isinstance(config, dict) else {}
    out = {}
    for registry, entry in auths.items():
        user, password = entry.get("username"), entry.get("password")
        if (user is None or password is None) and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        if user is not None:
            host = registry.split("://", 1)[-1].split("/", 1)[0]
            out[host] = (user, password or "")
    return out


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _write_if_changed(path: str, text: str) -> None:
    if _read(path) != text:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def _remove_tree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
