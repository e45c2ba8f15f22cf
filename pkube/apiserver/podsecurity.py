"""Pod Security Admission: the Pod Security Standards (privileged, baseline, restricted)
applied per namespace by its labels, as Kubernetes' built-in PodSecurity admission does.

    pod-security.kubernetes.io/enforce: baseline     # a violating pod is refused (403)
    pod-security.kubernetes.io/warn: restricted      # the client gets a Warning header
    pod-security.kubernetes.io/audit: restricted     # the audit event gets an annotation
    pod-security.kubernetes.io/<mode>-version: latest

A namespace without a label gets the cluster's default for that mode (``PodSecurityDefaults``:
privileged for all three, as kube-apiserver without an admission configuration), and exempt
namespaces (kube-system by default, where the control plane's static pods run with
hostNetwork) are not checked at all. Pods are checked on create and when their spec changes;
workloads with a pod template (Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs,
CronJobs, ReplicationControllers, PodTemplates) get warnings and audit annotations only,
never a refusal, as upstream. An unknown level in a label is evaluated as restricted, as
upstream. Versions are accepted (``latest`` or ``v1.N``) and every version is checked by
the latest standard.

The checks are pure functions of the pod's metadata and spec (``check_pod``), each returning
Kubernetes' forbidden reason and detail. The plugin reads namespaces' labels from a cache
kept by a watch (``start``/``stop``); a namespace not yet in it is read as unlabelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pkube.apiserver import errors, requestcontext
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest

log = logging.getLogger(__name__)

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
MODES = ("enforce", "audit", "warn")
LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCED_ANNOTATION = LABEL_PREFIX + "enforce-policy"
AUDIT_ANNOTATION = LABEL_PREFIX + "audit-violations"
EXEMPT_ANNOTATION = LABEL_PREFIX + "exempt"
WATCH_RETRY_SECONDS = 1.0

TEMPLATE_PATHS = {   # kind -> where its pod template is
    "Deployment": ("spec", "template"), "ReplicaSet": ("spec", "template"), "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"), "Job": ("spec", "template"), "ReplicationController": ("spec", "template"),
    "PodTemplate": ("template",), "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

BASELINE_CAPABILITIES = frozenset((
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"))
SAFE_SYSCTLS = frozenset((
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"))
SELINUX_TYPES = frozenset(("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"))
RESTRICTED_VOLUMES = frozenset((
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"))
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


# ---- the checks: (metadata, spec) -> list of (reason, detail)

Violation = tuple[str, str]


def _containers(spec: dict) -> list[dict]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
            *(spec.get("ephemeralContainers") or [])]


def _sc(obj: dict) -> dict:
    return obj.get("securityContext") or {}


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _containers_detail(names: list[str], rest: str) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_quoted(names)} {rest}"


def host_namespaces(metadata: dict, spec: dict) -> list[Violation]:
    used = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    return [("host namespaces", ", ".join(used))] if used else []


def privileged(metadata: dict, spec: dict) -> list[Violation]:
    names = [c["name"] for c in _containers(spec) if _sc(c).get("privileged")]
    return [("privileged", _containers_detail(names, "must not set securityContext.privileged=true"))] if names else []


def baseline_capabilities(metadata: dict, spec: dict) -> list[Violation]:
    details = []
    for c in _containers(spec):
        added = [cap for cap in (_sc(c).get("capabilities") or {}).get("add") or []
                 if cap not in BASELINE_CAPABILITIES]
        if added:
            details.append(f'container "{c["name"]}" must not include {_quoted(added)} in '
                           "securityContext.capabilities.add")
    return [("non-default capabilities", "; ".join(details))] if details else []


def host_path_volumes(metadata: dict, spec: dict) -> list[Violation]:
    names = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if not names:
        return []
    return [("hostPath volumes", f"{'volume' if len(names) == 1 else 'volumes'} {_quoted(names)}")]


def host_ports(metadata: dict, spec: dict) -> list[Violation]:
    details = []
    for c in _containers(spec):
        ports = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if ports:
            details.append(f'container "{c["name"]}" uses {"hostPort" if len(ports) == 1 else "hostPorts"} '
                           + ", ".join(ports))
    return [("hostPort", "; ".join(details))] if details else []


def apparmor(metadata: dict, spec: dict) -> list[Violation]:
    bad = [f"{k}={v}" for k, v in sorted((metadata.get("annotations") or {}).items())
           if k.startswith(APPARMOR_ANNOTATION) and v != "runtime/default" and not v.startswith("localhost/")]
    bad += [f"{where}={profile}" for where, profile in _apparmor_fields(spec) if profile == "Unconfined"]
    return [("forbidden AppArmor profile", ", ".join(bad))] if bad else []


def _apparmor_fields(spec: dict) -> list[tuple[str, str]]:
    found = []
    if (_sc(spec).get("appArmorProfile") or {}).get("type"):
        found.append(("pod", _sc(spec)["appArmorProfile"]["type"]))
    for c in _containers(spec):
        if (_sc(c).get("appArmorProfile") or {}).get("type"):
            found.append((f'container "{c["name"]}"', _sc(c)["appArmorProfile"]["type"]))
    return found


def selinux(metadata: dict, spec: dict) -> list[Violation]:
    details = []
    for where, opts in [("pod", _sc(spec).get("seLinuxOptions"))] + [
            (f'container "{c["name"]}"', _sc(c).get("seLinuxOptions")) for c in _containers(spec)]:
        if not opts:
            continue
        bad = []
        if opts.get("type", "") not in SELINUX_TYPES:
            bad.append(f'type "{opts["type"]}"')
        bad += [f'{field} "{opts[field]}"' for field in ("user", "role") if opts.get(field)]
        if bad:
            details.append(f"{where} set forbidden securityContext.seLinuxOptions: {', '.join(bad)}")
    return [("seLinuxOptions", "; ".join(details))] if details else []


def proc_mount(metadata: dict, spec: dict) -> list[Violation]:
    bad = [(c["name"], _sc(c)["procMount"]) for c in _containers(spec)
           if _sc(c).get("procMount") not in (None, "Default")]
    if not bad:
        return []
    return [("procMount", _containers_detail([n for n, _ in bad],
                                             f'must not set securityContext.procMount to {_quoted(sorted({m for _, m in bad}))}'))]


def seccomp_baseline(metadata: dict, spec: dict) -> list[Violation]:
    details = []
    if (_sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined":
        details.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    names = [c["name"] for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if names:
        details.append(_containers_detail(names, 'must not set securityContext.seccompProfile.type to "Unconfined"'))
    return [("seccompProfile", "; ".join(details))] if details else []


def sysctls(metadata: dict, spec: dict) -> list[Violation]:
    bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    return [("forbidden sysctls", ", ".join(bad))] if bad else []


def host_process(metadata: dict, spec: dict) -> list[Violation]:
    names = [c["name"] for c in _containers(spec) if (_sc(c).get("windowsOptions") or {}).get("hostProcess")]
    if (_sc(spec).get("windowsOptions") or {}).get("hostProcess") or names:
        return [("hostProcess", "pod or containers must not set securityContext.windowsOptions.hostProcess=true")]
    return []


def volume_types(metadata: dict, spec: dict) -> list[Violation]:
    bad = []
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        kind = kinds[0] if kinds else "emptyDir"
        if kind not in RESTRICTED_VOLUMES:
            bad.append((volume["name"], kind))
    if not bad:
        return []
    if len(bad) == 1:
        return [("restricted volume types", f'volume "{bad[0][0]}" uses restricted volume type "{bad[0][1]}"')]
    return [("restricted volume types", f"volumes {_quoted(n for n, _ in bad)} use restricted volume types "
             f"{_quoted(sorted({k for _, k in bad}))}")]


def privilege_escalation(metadata: dict, spec: dict) -> list[Violation]:
    names = [c["name"] for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not names:
        return []
    return [("allowPrivilegeEscalation != false",
             _containers_detail(names, "must set securityContext.allowPrivilegeEscalation=false"))]


def run_as_non_root(metadata: dict, spec: dict) -> list[Violation]:
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit_false = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    unset = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None]
    details = []
    if pod_value is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit_false:
        details.append(_containers_detail(explicit_false, "must not set securityContext.runAsNonRoot=false"))
    if pod_value is None and unset:
        details.append(f"pod or {_containers_detail(unset, 'must set securityContext.runAsNonRoot=true')}")
    return [("runAsNonRoot != true", "; ".join(details))] if details else []


def run_as_user(metadata: dict, spec: dict) -> list[Violation]:
    details = []
    if _sc(spec).get("runAsUser") == 0:
        details.append("pod must not set runAsUser=0")
    names = [c["name"] for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if names:
        details.append(_containers_detail(names, "must not set runAsUser=0"))
    return [("runAsUser=0", "; ".join(details))] if details else []


def seccomp_restricted(metadata: dict, spec: dict) -> list[Violation]:
    allowed = ("RuntimeDefault", "Localhost")
    pod_type = (_sc(spec).get("seccompProfile") or {}).get("type")
    bad = [c["name"] for c in _containers(spec)
           if ((_sc(c).get("seccompProfile") or {}).get("type") or pod_type) not in allowed]
    details = []
    if pod_type is not None and pod_type not in allowed:
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    if bad:
        who = _containers_detail(bad, 'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
        details.append(who if pod_type is not None else f"pod or {who}")
    return [("seccompProfile", "; ".join(details))] if details else []


def restricted_capabilities(metadata: dict, spec: dict) -> list[Violation]:
    no_drop, added = [], []
    for c in _containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            no_drop.append(c["name"])
        extra = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            added.append(f'container "{c["name"]}" must not include {_quoted(extra)} in securityContext.capabilities.add')
    details = ([_containers_detail(no_drop, 'must set securityContext.capabilities.drop=["ALL"]')] if no_drop else []) + added
    return [("unrestricted capabilities", "; ".join(details))] if details else []


Check = Callable[[dict, dict], list[Violation]]
# Upstream's check IDs: a level's checks run sorted by ID, so messages list them in that order;
# a restricted check replaces the baseline check it overrides.
BASELINE_CHECKS: dict[str, Check] = {
    "appArmorProfile": apparmor, "capabilities_baseline": baseline_capabilities,
    "hostNamespaces": host_namespaces, "hostPathVolumes": host_path_volumes, "hostPorts": host_ports,
    "hostProcess": host_process, "privileged": privileged, "procMount": proc_mount,
    "seLinuxOptions": selinux, "seccompProfile_baseline": seccomp_baseline, "sysctls": sysctls}
RESTRICTED_CHECKS: dict[str, Check] = {
    "allowPrivilegeEscalation": privilege_escalation, "capabilities_restricted": restricted_capabilities,
    "restrictedVolumes": volume_types, "runAsNonRoot": run_as_non_root, "runAsUser": run_as_user,
    "seccompProfile_restricted": seccomp_restricted}
OVERRIDDEN_BY_RESTRICTED = ("capabilities_baseline", "hostPathVolumes", "seccompProfile_baseline")


def checks_of(level: str) -> list[Check]:
    """The checks of ``level``, in upstream's order."""
    if level == PRIVILEGED:
        return []
    checks = dict(BASELINE_CHECKS)
    if level == RESTRICTED:
        for overridden in OVERRIDDEN_BY_RESTRICTED:
            del checks[overridden]
        checks.update(RESTRICTED_CHECKS)
    return [checks[check_id] for check_id in sorted(checks)]


def check_pod(level: str, metadata: dict, spec: dict) -> list[Violation]:
    """Every violation of ``level`` by a pod (or pod template)."""
    found: list[Violation] = []
    for check in checks_of(level):
        found += check(metadata, spec)
    return found


def forbidden_detail(violations: list[Violation]) -> str:
    """``privileged (container "c" must not ...), hostPort (...)``, as upstream joins them."""
    return ", ".join(f"{r} ({d})" if d else r for r, d in violations)


# ---- policy per namespace

@dataclass(frozen=True)
class Policy:
    """One mode's level and version ("latest" or "v1.N")."""

    level: str = PRIVILEGED
    version: str = "latest"

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


@dataclass(frozen=True)
class PodSecurityDefaults:
    """The cluster's defaults (kube-apiserver's PodSecurityConfiguration): the policy of each
    mode for a namespace without that label, and the exempt namespaces."""

    enforce: Policy = Policy()
    audit: Policy = Policy()
    warn: Policy = Policy()
    exempt_namespaces: tuple[str, ...] = ("kube-system",)


def namespace_policies(labels: dict, defaults: PodSecurityDefaults) -> dict[str, Policy]:
    """mode -> Policy from a namespace's labels; an invalid level is restricted."""
    policies = {}
    for mode in MODES:
        default = getattr(defaults, mode)
        level = labels.get(LABEL_PREFIX + mode, default.level)
        version = labels.get(f"{LABEL_PREFIX}{mode}-version", default.version)
        if level not in LEVELS:
            level = RESTRICTED
        policies[mode] = Policy(level, version)
    return policies


class PodSecurity:
    """The admission plugin. ``storage`` feeds the namespace label cache (``start``)."""

    name = "PodSecurity"

    def __init__(self, storage, defaults: PodSecurityDefaults = PodSecurityDefaults(),
                 namespace_prefix: str = "/registry/namespaces/"):
        self.storage, self.defaults, self.prefix = storage, defaults, namespace_prefix
        self.labels: dict[str, dict] = {}
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        listed = await self.storage.list(self.prefix)
        self._absorb(listed.items)
        self._watcher = asyncio.create_task(self._follow(listed.revision))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    def _absorb(self, objects: list[dict]) -> None:
        self.labels = {o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in objects}

    async def _follow(self, revision: int) -> None:
        """Keep ``labels`` current from a watch; relist after any failure."""
        while True:
            try:
                async with contextlib.aclosing(self.storage.watch(self.prefix, revision)) as events:
                    async for event in events:
                        name = event.object["metadata"]["name"]
                        if event.type == "DELETED":
                            self.labels.pop(name, None)
                        else:
                            self.labels[name] = event.object["metadata"].get("labels") or {}
                        revision = event.revision
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: relist and go on
                log.warning("PodSecurity namespace watch failed (%s); relisting", exc)
                await asyncio.sleep(WATCH_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    listed = await self.storage.list(self.prefix)
                    self._absorb(listed.items)
                    revision = listed.revision

    def validate(self, request: AdmissionRequest) -> None:
        """Refuse a pod that violates its namespace's enforce level (403); warn and annotate."""
        subject = self._subject(request)
        if subject is None:
            return
        namespace = request.target.namespace or ""
        if namespace in self.defaults.exempt_namespaces:
            requestcontext.add_annotation(EXEMPT_ANNOTATION, "namespace")
            return
        metadata, spec = subject
        policies = namespace_policies(self.labels.get(namespace, {}), self.defaults)
        is_pod = request.kind == "Pod"
        if is_pod:
            requestcontext.add_annotation(ENFORCED_ANNOTATION, str(policies["enforce"]))
            violations = check_pod(policies["enforce"].level, metadata, spec)
            if violations:
                raise errors.forbidden(f'pods "{request.obj["metadata"].get("name", "")}" is forbidden: '
                                       f'violates PodSecurity "{policies["enforce"]}": {forbidden_detail(violations)}')
        audit = check_pod(policies["audit"].level, metadata, spec)
        if audit:
            requestcontext.add_annotation(AUDIT_ANNOTATION, f'would violate PodSecurity "{policies["audit"]}": '
                                                            f"{forbidden_detail(audit)}")
        warn = check_pod(policies["warn"].level, metadata, spec)
        if warn:
            requestcontext.add_warning(f'would violate PodSecurity "{policies["warn"]}": {forbidden_detail(warn)}')

    def _subject(self, request: AdmissionRequest) -> tuple[dict, dict] | None:
        """(metadata, spec) of the pod or pod template this write stores, or None when there
        is nothing to check (another kind, a subresource, a delete, an unchanged spec)."""
        if request.operation not in (CREATE, UPDATE) or request.obj is None:
            return None
        if request.subresource not in ("", "ephemeralcontainers"):
            return None
        if request.kind == "Pod":
            pod = request.obj
        elif request.kind in TEMPLATE_PATHS:
            pod = _dig(request.obj, TEMPLATE_PATHS[request.kind])
            if pod is None:
                return None
        else:
            return None
        if request.operation == UPDATE and request.old is not None:
            old = request.old if request.kind == "Pod" else _dig(request.old, TEMPLATE_PATHS[request.kind])
            if old is not None and _relevant(old) == _relevant(pod):
                return None
        return pod.get("metadata") or {}, pod.get("spec") or {}


def _dig(obj: dict, path: tuple[str, ...]) -> dict | None:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else None


def _relevant(pod: dict) -> tuple:
    """What the checks read: the spec and the AppArmor annotations."""
    annotations = {k: v for k, v in ((pod.get("metadata") or {}).get("annotations") or {}).items()
                   if k.startswith(APPARMOR_ANNOTATION)}
    return pod.get("spec"), annotations
