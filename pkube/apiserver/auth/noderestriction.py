"""NodeRestriction admission (Kubernetes' ``plugin/pkg/admission/noderestriction``): what a
node writes must be its own. It may create or change only its own Node (and may not set
labels under ``node-restriction.kubernetes.io/``), create only mirror pods bound to itself
that use no Secrets, ConfigMaps, claims or ServiceAccount tokens, update the status only of
pods bound to it, and write only its own Lease. Requests from users that are not nodes, and
from an apiserver without authentication, pass untouched.
"""

from __future__ import annotations

from typing import Optional

from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.auth.node import LEASE_NAMESPACE

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"


class NodeRestriction:
    """The admission plugin (validate only: it sees objects after defaults)."""

    name = "NodeRestriction"

    def validate(self, request: AdmissionRequest) -> None:
        node = request.user.node_name if request.user is not None else ""
        if not node:
            return
        check = {"Pod": self._pod, "Node": self._node, "Lease": self._lease}.get(request.kind)
        if check is not None:
            problem = check(node, request)
            if problem:
                raise _forbidden(request, problem)

    def _pod(self, node: str, request: AdmissionRequest) -> str:
        if request.subresource == "status":
            bound = ((request.old or {}).get("spec") or {}).get("nodeName")
            if bound != node:
                return f'node "{node}" can only update pod status for pods with spec.nodeName set to itself'
            return ""
        if request.operation == UPDATE:
            return f'node "{node}" can only update pod status'
        if request.operation != CREATE or request.subresource:
            return ""
        return _mirror_pod_problem(node, request.obj or {})

    def _node(self, node: str, request: AdmissionRequest) -> str:
        name = request.target.name or ((request.obj or {}).get("metadata") or {}).get("name", "")
        if name != node:
            return f'node "{node}" is not allowed to modify node "{name}"'
        new = _labels(request.obj)
        old = _labels(request.old) if request.operation == UPDATE else {}
        changed = sorted(k for k in set(new) | set(old) if k.startswith(RESTRICTED_LABEL_PREFIX)
                         and new.get(k) != old.get(k))
        if changed:
            return f'node "{node}" is not allowed to modify labels: {", ".join(changed)}'
        return ""

    def _lease(self, node: str, request: AdmissionRequest) -> str:
        name = request.target.name or ((request.obj or {}).get("metadata") or {}).get("name", "")
        if request.target.namespace != LEASE_NAMESPACE or name != node:
            return "can only access node lease with the same name as the requesting node"
        return ""


def _mirror_pod_problem(node: str, pod: dict) -> str:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    spec = pod.get("spec") or {}
    if MIRROR_ANNOTATION not in annotations:
        return f'pod does not have "{MIRROR_ANNOTATION}" annotation, node "{node}" can only create mirror pods'
    if spec.get("nodeName") != node:
        return f'node "{node}" can only create pods with spec.nodeName set to itself'
    for volume in spec.get("volumes") or ():
        kind = _forbidden_volume(volume)
        if kind:
            return f'node "{node}" can not create pods that reference {kind}'
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or ():
            if any(source.get("secretRef") or source.get("configMapRef") for source in container.get("envFrom") or ()) \
                    or any((env.get("valueFrom") or {}).get("secretKeyRef") or (env.get("valueFrom") or {}).get(
                        "configMapKeyRef") for env in container.get("env") or ()):
                return f'node "{node}" can not create pods that reference secrets or configmaps'
    return ""


def _forbidden_volume(volume: dict) -> str:
    if "secret" in volume:
        return "secrets"
    if "configMap" in volume:
        return "configmaps"
    if "persistentVolumeClaim" in volume or "ephemeral" in volume:
        return "persistentvolumeclaims"
    for source in (volume.get("projected") or {}).get("sources") or ():
        if "serviceAccountToken" in source:
            return "serviceaccounts"
        if "secret" in source or "configMap" in source:
            return "secrets or configmaps"
    return ""


def _labels(obj: Optional[dict]) -> dict:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _forbidden(request: AdmissionRequest, problem: str) -> errors.ApiError:
    """Kubernetes' admission Forbidden: ``pods "x" is forbidden: <problem>``."""
    info = request.target.info
    qualified = errors.qualified(info)
    name = request.target.name or ((request.obj or {}).get("metadata") or {}).get("name", "")
    subject = f'{qualified} "{name}"' if name else qualified
    return errors.ApiError(403, "Forbidden", f"{subject} is forbidden: {problem}",
                           details={"name": name, "group": info.group, "kind": info.plural})
