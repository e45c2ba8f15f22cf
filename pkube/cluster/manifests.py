"""The control plane's static pod manifests: the templates of the top-level `manifests/`,
filled in for one cluster, plus the read-only hostPath mounts of pkube's own installation.

The containers run from the host image (runtime.hostimage): its root holds only mount
points, and every container gets the host's /usr, the interpreter's prefix, the venv and
the pkube source bind-mounted read-only at the same paths, so `python -m pkube.apiserver` inside
is the very interpreter and code `pkube up` runs with (as kubeadm mounts /etc/kubernetes/pki
into its pods rather than baking certificates into images).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import yaml

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
ETCD = "etcd"
APISERVER = "kube-apiserver"
SCHEDULER = "kube-scheduler"
CONTROLLER_MANAGER = "kube-controller-manager"
CONTROL_PLANE = (ETCD, APISERVER, SCHEDULER, CONTROLLER_MANAGER)
NAMESPACE = "kube-system"
CONTAINER_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
LD_SO_CACHE = "/etc/ld.so.cache"
_VOLUME_NAME = re.compile(r"[^a-z0-9-]+")


class ManifestError(ValueError):
    """A template that cannot be filled in (missing, unknown placeholder, not a Pod)."""


@dataclass(frozen=True)
class ManifestValues:
    """What the templates' ${...} placeholders stand for."""

    image: str
    python: str
    etcd: str
    data_dir: str
    pki_dir: str
    scheduler_kubeconfig: str
    controller_manager_kubeconfig: str
    apiserver_port: int
    etcd_client_port: int
    etcd_peer_port: int


def source_root() -> Path:
    """The pkube package's directory (in the repository for an editable install)."""
    return Path(__file__).resolve().parent.parent


def installation_paths(etcd_binary: str) -> list[str]:
    """The host paths the control plane's containers need, read-only: /usr (the shared
    libraries, and etcd when packaged), the interpreter's prefix, the venv, pkube's source,
    etcd's binary and the dynamic loader's cache. Nested paths are kept; the image drops them."""
    paths = ["/usr", os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
             str(source_root()), os.path.realpath(etcd_binary)]
    if os.path.exists(LD_SO_CACHE):
        paths.append(LD_SO_CACHE)
    return paths


def etcd_binary() -> str:
    """The host's etcd; raises ManifestError when there is none."""
    found = shutil.which("etcd")
    if found is None:
        raise ManifestError("etcd not found: install etcd 3.5 (make setup: scripts/install-etcd.sh)")
    return os.path.realpath(found)


def render(name: str, values: ManifestValues, mounts: list[str], extra_flags: Sequence[str] = (),
           templates: Path = TEMPLATES_DIR) -> dict:
    """The Pod of template `name` (e.g. "kube-apiserver") filled with `values`, every container
    given `mounts` (host paths, read-only at the same path) and CONTAINER_ENV, its first
    container's command ending with `extra_flags`. Raises ManifestError."""
    path = templates / f"{name}.yaml"
    try:
        text = path.read_text()
    except OSError as err:
        raise ManifestError(f"control plane template {path}: {err.strerror or err}") from None
    escaped = {k: json.dumps(str(v))[1:-1] for k, v in asdict(values).items()}
    try:
        pod = yaml.safe_load(string.Template(text).substitute(escaped))
    except (KeyError, ValueError) as err:
        raise ManifestError(f"control plane template {path}: unknown placeholder {err}") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"control plane template {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise ManifestError(f"control plane template {path}: not a Pod")
    add_host_mounts(pod, mounts)
    pod["spec"]["containers"][0]["command"] += list(extra_flags)
    return pod


def add_host_mounts(pod: dict, mounts: list[str]) -> None:
    """Add a read-only hostPath volume per path of `mounts` (mounted at the same path in each
    container) and CONTAINER_ENV to every container of `pod`, in place."""
    spec = pod["spec"]
    names = [f"host-{i}-{_VOLUME_NAME.sub('-', p.lower()).strip('-')}"[:63].rstrip("-")
             for i, p in enumerate(mounts)]
    spec["volumes"] = [*(spec.get("volumes") or []),
                       *({"name": n, "hostPath": {"path": p, "type": "Directory" if os.path.isdir(p) else "File"}}
                         for n, p in zip(names, mounts))]
    for container in spec["containers"]:
        container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                     *({"name": n, "mountPath": p, "readOnly": True} for n, p in zip(names, mounts))]
        env = [e for e in container.get("env") or [] if e["name"] not in CONTAINER_ENV]
        container["env"] = env + [{"name": k, "value": v} for k, v in CONTAINER_ENV.items()]


def manifest_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.yaml"


def write_manifest(directory: Path, name: str, pod: dict) -> Path:
    """Write `pod` as DIRECTORY/NAME.yaml atomically (the kubelet never reads half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = manifest_path(directory, name)
    tmp = directory / f".{name}.yaml.tmp"     # hidden: the kubelet skips it
    tmp.write_text(yaml.safe_dump(pod, sort_keys=False))
    os.replace(tmp, path)
    return path


def remove_manifests(directory: Path) -> None:
    """Remove the control plane's manifests from `directory` (others are left alone)."""
    for name in CONTROL_PLANE:
        manifest_path(directory, name).unlink(missing_ok=True)


def mirror_name(name: str, node_name: str) -> str:
    """The static pod's name in the API: `kube-apiserver-NODE`."""
    return f"{name}-{node_name}"
