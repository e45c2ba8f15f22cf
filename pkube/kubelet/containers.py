"""Pods in the runtime's terms: sandboxes and containers, labelled with the pod they belong to.

`PodRuntime` is the kubelet's only door to the runtime library. Its methods block (they
take file locks, fork shims, talk netlink): the pod workers call them in threads. Records
carry the labels below, so a kubelet that restarts finds its pods' sandboxes and containers
again from the runtime's state alone (`adopt`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from pkube.api.quantity import cpu_millicores, memory_bytes
from pkube.runtime.cgroups import Resources
from pkube.runtime.portmap import PortMapping
from pkube.runtime.network import NetworkError
from pkube.runtime.runtime import Conflict, NoSuchContainer, Runtime
from pkube.runtime.spec import ContainerSpec, SandboxSpec

log = logging.getLogger(__name__)

POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_ATTEMPT = "io.kubernetes.container.attempt"
CONTAINER_HASH = "io.kubernetes.container.hash"
SANDBOX_ATTEMPT = "io.kubernetes.sandbox.attempt"
CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2


def pod_labels(pod: dict) -> dict[str, str]:
    meta = pod["metadata"]
    return {POD_UID: meta["uid"], POD_NAME: meta["name"], POD_NAMESPACE: meta.get("namespace") or "default"}


def runtime_name(*parts: str) -> str:
    """A runtime container name from Kubernetes names (already DNS-safe), Kubernetes' k8s_ style."""
    return "k8s_" + "_".join(parts)


def container_hash(container: dict) -> str:
    """A digest of the container's spec: a running container whose spec changed (a new image)
    is restarted, as Kubernetes does."""
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def container_resources(resources: dict | None) -> Resources | None:
    """cgroup limits from a container's resources: limits.memory, limits.cpu as a CFS quota,
    requests.cpu as shares (Kubernetes' MilliCPUToShares)."""
    resources = resources or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    memory = memory_bytes(limits["memory"]) if "memory" in limits else None
    quota = max(1000, cpu_millicores(limits["cpu"]) * CPU_PERIOD_US // 1000) if "cpu" in limits else None
    cpu_request = requests.get("cpu", limits.get("cpu"))
    shares = max(MIN_CPU_SHARES, cpu_millicores(cpu_request) * 1024 // 1000) if cpu_request is not None else None
    if memory is None and quota is None and shares is None:
        return None
    return Resources(memory_bytes=memory or None, cpu_quota_us=quota, cpu_period_us=CPU_PERIOD_US,
                     cpu_shares=shares)


def pod_resources(pod: dict) -> Resources | None:
    """The pod cgroup's limits: the sum of its containers' limits, when every container has
    one (else that resource is unlimited at pod level)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not containers:
        return None
    memory = sum(memory_bytes(l["memory"]) for l in limits) if all("memory" in l for l in limits) else None
    cpu = sum(cpu_millicores(l["cpu"]) for l in limits) if all("cpu" in l for l in limits) else None
    if not memory and not cpu:
        return None
    return Resources(memory_bytes=memory or None,
                     cpu_quota_us=max(1000, cpu * CPU_PERIOD_US // 1000) if cpu else None,
                     cpu_period_us=CPU_PERIOD_US)


class NetworkNotReady(RuntimeError):
    """A pod needs the pod network and the node has none yet."""


@dataclass
class AdoptedPod:
    """What the runtime holds of one pod: its sandboxes and containers, newest first."""

    uid: str
    sandboxes: list = field(default_factory=list)
    containers: dict = field(default_factory=dict)    # container name -> [records], newest attempt first


class PodRuntime:
    """Sandboxes and containers of pods, on one runtime. `cgroup_root` is the cgroup path
    pods are created under (kubepods/pod<uid>/<container id>)."""

    def __init__(self, runtime: Runtime, cgroup_root: str = "kubepods"):
        self.runtime = runtime
        self.cgroup_root = cgroup_root
        self.network = None            # the runtime's BridgeNetwork on the node's podCIDR, once set up

    @property
    def network_ready(self) -> bool:
        return self.network is not None

    def pod_cgroup(self, pod: dict) -> str:
        return f"{self.cgroup_root}/pod{pod['metadata']['uid']}"

    def start_sandbox(self, pod: dict, attempt: int):
        """A new running sandbox for `pod` (host network for hostNetwork pods); raises the
        runtime's errors (StartError, NetworkError, Conflict). A bridge deleted behind the
        kubelet's back is set up again, once."""
        spec = pod.get("spec") or {}
        if not spec.get("hostNetwork") and not self.network_ready:
            raise NetworkNotReady("network is not ready: the node has no pod CIDR yet")
        try:
            return self.runtime.create_sandbox(self._sandbox_spec(pod, attempt))
        except NetworkError:
            if spec.get("hostNetwork") or self._bridge_present():
                raise
        log.warning("the pods' bridge %s was gone: set up again", self.network.bridge)
        self.network.ensure()
        return self.runtime.create_sandbox(self._sandbox_spec(pod, attempt, retry=True))

    def _sandbox_spec(self, pod: dict, attempt: int, retry: bool = False) -> SandboxSpec:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        labels = {**pod_labels(pod), SANDBOX_ATTEMPT: str(attempt)}
        hostname = spec.get("hostname") or meta["name"]
        name = runtime_name("POD", meta["name"], labels[POD_NAMESPACE], meta["uid"][:8], str(attempt))
        return SandboxSpec(
            name=name + ("-r" if retry else ""), hostname=hostname[:63], labels=labels,
            network="host" if spec.get("hostNetwork") else "bridge",
            share_pid=bool(spec.get("shareProcessNamespace")),
            port_mappings=[] if spec.get("hostNetwork") else host_ports(pod),
            cgroup_parent=self.pod_cgroup(pod), resources=pod_resources(pod))

    def _bridge_present(self) -> bool:
        from pkube.runtime.netlink import link_exists   # not sysfs: it shows the host's links under nsenter --net
        return link_exists(self.network.bridge)

    def start_container(self, pod: dict, container: dict, sandbox, attempt: int, *, image: str,
                        env: dict, mounts: list):
        """Create and start one instance of `container` in `sandbox`; the started record.
        Raises SpecError, ImageNotFound, StartError (the record then exists, exited, with
        `error` set: the caller reports it)."""
        meta = pod["metadata"]
        labels = {**pod_labels(pod), CONTAINER_NAME: container["name"], CONTAINER_ATTEMPT: str(attempt),
                  CONTAINER_HASH: container_hash(container)}
        spec = ContainerSpec(
            image=image, entrypoint=container.get("command"), command=container.get("args"),
            env=env, workdir=container.get("workingDir") or None, user=_user(container, pod),
            name=runtime_name(container["name"], meta["name"], labels[POD_NAMESPACE], meta["uid"][:8], str(attempt)),
            labels=labels, tty=bool(container.get("tty")), stdin_open=bool(container.get("stdin")),
            mounts=mounts, network="none", sandbox_id=sandbox.id,
            resources=container_resources(container.get("resources")), cgroup_parent=self.pod_cgroup(pod),
            seccomp=seccomp_profile(container, pod), **security_options(container))
        record = self.runtime.create(spec)
        self.runtime.start(record.id)
        return self.runtime.get(record.id)

    def get(self, cid: str):
        """The refreshed record, or None when it is gone."""
        try:
            return self.runtime.get(cid)
        except NoSuchContainer:
            return None

    def stop(self, cid: str, timeout: float) -> None:
        """SIGTERM, SIGKILL after `timeout`; a gone or stopped container is fine."""
        try:
            self.runtime.stop(cid, timeout=max(0.0, timeout))
        except NoSuchContainer:
            pass

    def signal(self, cid: str, signal: int) -> None:
        """Send `signal` to the container's process; one that is gone or stopped is fine."""
        try:
            self.runtime.kill(cid, signal)
        except (NoSuchContainer, Conflict):
            pass

    def kill(self, cid: str) -> None:
        try:
            self.runtime.stop(cid, timeout=0)
        except NoSuchContainer:
            pass

    def remove(self, cid: str) -> None:
        try:
            self.runtime.remove(cid, force=True)
        except NoSuchContainer:
            pass

    def remove_sandbox(self, sandbox_id: str) -> None:
        """The sandbox, every container in it and its pod cgroup; idempotent."""
        self.runtime.remove_sandbox(sandbox_id)

    def instances(self, uid: str, container_name: str) -> list:
        """The records of one container of one pod, newest attempt first."""
        records = self.runtime.list(all=True, labels={POD_UID: uid, CONTAINER_NAME: container_name})
        return sorted(records, key=lambda r: int(r.labels.get(CONTAINER_ATTEMPT, 0)), reverse=True)

    def adopt(self) -> dict[str, AdoptedPod]:
        """Every pod the runtime holds, by uid: one listing of the store."""
        pods: dict[str, AdoptedPod] = {}
        for record in self.runtime.list(all=True, labels={POD_UID: None}, kind="sandbox"):
            pods.setdefault(record.labels[POD_UID], AdoptedPod(record.labels[POD_UID])).sandboxes.append(record)
        for record in self.runtime.list(all=True, labels={POD_UID: None}):
            adopted = pods.setdefault(record.labels[POD_UID], AdoptedPod(record.labels[POD_UID]))
            adopted.containers.setdefault(record.labels.get(CONTAINER_NAME, ""), []).append(record)
        for adopted in pods.values():
            adopted.sandboxes.sort(key=lambda r: int(r.labels.get(SANDBOX_ATTEMPT, 0)), reverse=True)
            for records in adopted.containers.values():
                records.sort(key=lambda r: int(r.labels.get(CONTAINER_ATTEMPT, 0)), reverse=True)
        return pods


def host_ports(pod: dict) -> list[PortMapping]:
    """The pod's hostPort mappings (DNAT from the node's port to the pod's)."""
    out = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(PortMapping(int(port["hostPort"]), int(port["containerPort"]),
                                       (port.get("protocol") or "TCP").lower(), port.get("hostIP") or ""))
    return out


def security_options(container: dict) -> dict:
    """The runtime's cap_add, cap_drop, privileged and read_only from a container's securityContext."""
    ctx = container.get("securityContext") or {}
    caps = ctx.get("capabilities") or {}
    escalation = ctx.get("allowPrivilegeEscalation")
    return {"cap_add": list(caps.get("add") or []), "cap_drop": list(caps.get("drop") or []),
            "privileged": bool(ctx.get("privileged")), "read_only": bool(ctx.get("readOnlyRootFilesystem")),
            "no_new_privileges": escalation is not True}


SECCOMP_PROFILES = {"RuntimeDefault": "default", "Unconfined": "unconfined"}


def _seccomp_type(container: dict, pod: dict):
    """securityContext.seccompProfile.type of the container, else the pod's, else None."""
    own = ((container.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    return own or (pod_ctx.get("seccompProfile") or {}).get("type")


def seccomp_profile(container: dict, pod: dict) -> str:
    """The runtime's seccomp profile for a container: RuntimeDefault when the pod says nothing
    (the kubelet's SeccompDefault, on in pkube: stricter than Kubernetes' Unconfined default),
    Unconfined when asked. A Localhost profile is refused before this (seccomp_error)."""
    return SECCOMP_PROFILES.get(_seccomp_type(container, pod) or "RuntimeDefault", "default")


def seccomp_error(container: dict, pod: dict) -> str:
    """The refusal of a seccompProfile the runtime cannot honour ("" when it can)."""
    kind = _seccomp_type(container, pod)
    if kind is None or kind in SECCOMP_PROFILES:
        return ""
    if kind == "Localhost":
        return (f"container {container['name']}: seccompProfile type Localhost is not supported by pkube's "
                "runtime (use RuntimeDefault or Unconfined)")
    return f"container {container['name']}: unknown seccompProfile type {kind!r}"


def run_as_non_root_error(container: dict, pod: dict, image_user: str) -> str:
    """Kubernetes' refusal when runAsNonRoot cannot be honoured ("" when it can)."""
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = {**pod_ctx, **(container.get("securityContext") or {})}
    if not ctx.get("runAsNonRoot"):
        return ""
    where = f"(pod: \"{pod['metadata']['name']}_{pod['metadata'].get('namespace')}({pod['metadata']['uid']})\", " \
            f"container: {container['name']})"
    if ctx.get("runAsUser") is not None:
        return f"container's runAsUser breaks non-root policy {where}" if ctx["runAsUser"] == 0 else ""
    user = (image_user or "").split(":", 1)[0]
    if user in ("", "0", "root"):
        return f"container has runAsNonRoot and image will run as root {where}"
    if not user.isdigit():
        return f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {where}"
    return ""


def _user(container: dict, pod: dict) -> str | None:
    """runAsUser[:runAsGroup] from the container's securityContext over the pod's."""
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = {**pod_ctx, **(container.get("securityContext") or {})}
    user, group = ctx.get("runAsUser"), ctx.get("runAsGroup")
    if user is None:
        return None if group is None else f"0:{group}"
    return f"{user}:{group}" if group is not None else str(user)
