"""The ServiceAccount admission plugin, as Kubernetes' (plugin/pkg/admission/serviceaccount).

On pod creation: a pod without ``serviceAccountName`` gets ``default``; a pod naming a
ServiceAccount that does not exist is refused (403 ``pods "x" is forbidden: error looking up
service account NS/NAME: serviceaccount "NAME" not found``); unless
``automountServiceAccountToken`` is false (the pod's wins over the ServiceAccount's), the
pod gets the projected volume ``kube-api-access-<5 random chars>`` (a token, the cluster CA
from the ConfigMap kube-root-ca.crt, the namespace) mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount in every container and init container that
does not mount something there already. Mirror pods are left alone.

One difference: Kubernetes retries the lookup of a missing ``default`` ServiceAccount against
the store for about a second, since the controller makes it just after the namespace; our
admission must not do I/O, so a missing ``default`` is let through (the kubelet's token
request fails, and is retried, until the controller has made it).
"""

from __future__ import annotations

import secrets
from typing import Optional

from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, AdmissionRequest

DEFAULT_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
TOKEN_EXPIRATION = 3607
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"   # Kubernetes' utilrand.String


def token_volume(name: str) -> dict:
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(length))


class ServiceAccountAdmission:
    """The plugin; ``accounts`` answers ``account(namespace, name) -> dict | None`` from a cache
    (apiserver.auth.serviceaccounts.ServiceAccountCache, started by its owner)."""

    name = "ServiceAccount"

    def __init__(self, accounts):
        self.accounts = accounts

    def mutate(self, request: AdmissionRequest) -> None:
        if request.operation != CREATE or request.kind != "Pod" or request.subresource or request.obj is None:
            return
        pod = request.obj
        if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_ACCOUNT
        spec["serviceAccountName"] = name
        namespace = request.target.namespace or (pod.get("metadata") or {}).get("namespace", "")
        account = self.accounts.account(namespace, name)
        if account is None and name != DEFAULT_ACCOUNT:
            pod_name = (pod.get("metadata") or {}).get("name", "")
            raise errors.forbidden(f'pods "{pod_name}" is forbidden: error looking up service account '
                                   f'{namespace}/{name}: serviceaccount "{name}" not found')
        if automount(spec, account):
            mount_token(spec)


def automount(spec: dict, account: Optional[dict]) -> bool:
    """The pod's automountServiceAccountToken when set, else the ServiceAccount's, else True."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def mount_token(spec: dict) -> None:
    """Add the token volume (once) and its mount to every container that has none at MOUNT_PATH."""
    volumes = spec.setdefault("volumes", [])
    if volumes is None:
        volumes = spec["volumes"] = []
    existing = [v["name"] for v in volumes if isinstance(v, dict) and str(v.get("name", "")).startswith(VOLUME_PREFIX)
                and v.get("projected") is not None]
    name = existing[0] if existing else VOLUME_PREFIX + random_suffix()
    added = False
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            mounts = container.setdefault("volumeMounts", []) if isinstance(container, dict) else None
            if mounts is None or any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
            added = True
    if added and not existing:
        volumes.append(token_volume(name))
