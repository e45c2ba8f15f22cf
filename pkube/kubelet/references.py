"""Which Secrets and ConfigMaps a pod uses (volumes, projected sources, env, envFrom), so
that a change to one of them wakes exactly the pods that read it."""

from __future__ import annotations


def pod_references(pod: dict) -> set[tuple[str, str]]:
    """{(kind, name)} of the Secrets and ConfigMaps in the pod's namespace that it reads."""
    spec = pod.get("spec") or {}
    refs: set[tuple[str, str]] = set()
    for volume in spec.get("volumes") or []:
        refs |= _volume_references(volume)
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        refs |= _env_references(container)
    for secret in spec.get("imagePullSecrets") or []:
        if secret.get("name"):
            refs.add(("Secret", secret["name"]))
    return refs


def _volume_references(volume: dict) -> set[tuple[str, str]]:
    refs = set()
    if (volume.get("secret") or {}).get("secretName"):
        refs.add(("Secret", volume["secret"]["secretName"]))
    if (volume.get("configMap") or {}).get("name"):
        refs.add(("ConfigMap", volume["configMap"]["name"]))
    for source in (volume.get("projected") or {}).get("sources") or []:
        if (source.get("secret") or {}).get("name"):
            refs.add(("Secret", source["secret"]["name"]))
        if (source.get("configMap") or {}).get("name"):
            refs.add(("ConfigMap", source["configMap"]["name"]))
    return refs


def _env_references(container: dict) -> set[tuple[str, str]]:
    refs = set()
    for item in container.get("envFrom") or []:
        if (item.get("secretRef") or {}).get("name"):
            refs.add(("Secret", item["secretRef"]["name"]))
        if (item.get("configMapRef") or {}).get("name"):
            refs.add(("ConfigMap", item["configMapRef"]["name"]))
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if (source.get("secretKeyRef") or {}).get("name"):
            refs.add(("Secret", source["secretKeyRef"]["name"]))
        if (source.get("configMapKeyRef") or {}).get("name"):
            refs.add(("ConfigMap", source["configMapKeyRef"]["name"]))
    return refs
