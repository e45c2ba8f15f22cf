"""The default StorageClass `pkube up` adds: `local-path`, as k3s ships one.

Provisioner `pkube.io/local-path` (the PV controller's local-path provisioner), binding
WaitForFirstConsumer (the volume is made on the node the pod is scheduled to), reclaim Delete,
and `nodePath` = `DIR/storage` of the data dir `pkube up` runs with: each volume is one
directory there (`pvc-<uid>_<namespace>_<name>`). `pkube up` makes it rather than the
apiserver's bootstrap because only `pkube up` knows the node's data dir; a cluster whose class
exists already (a restart) keeps it.
"""

from __future__ import annotations

from pathlib import Path

from pkube.client.resources import STORAGECLASSES
from pkube.cluster.addons import ensure_object

CLASS_NAME = "local-path"
PROVISIONER = "pkube.io/local-path"
TIMEOUT_SECONDS = 30.0


def local_path_class(data_dir: Path) -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "parameters": {"nodePath": str(Path(data_dir).resolve() / "storage")},
    }


def ensure_local_path_class(kubeconfig: Path, data_dir: Path, timeout: float = TIMEOUT_SECONDS) -> None:
    """Create the class unless it exists; retried while the apiserver starts. Raises as
    addons.ensure_object."""
    ensure_object(kubeconfig, STORAGECLASSES, local_path_class(data_dir), None, timeout)
