"""The local-path provisioner's objects, as k3s's local-path-provisioner makes them.

A claim of a class whose provisioner is ``pkube.io/local-path`` gets a hostPath volume
(type DirectoryOrCreate) at ``<nodePath>/pvc-<uid>_<namespace>_<name>`` on the node the
scheduler selected, with a required node affinity to that node (``kubernetes.io/hostname``).
``nodePath`` is the class's parameter (``pkube up`` sets it to its data dir's ``storage``);
the default is ``/var/lib/pkube/storage``.

Who makes and removes the directory: the kubelet makes it when it first mounts the volume
(DirectoryOrCreate, 0755, as it does for any such hostPath). Removing it needs the node, and the
controller-manager may run elsewhere, so the controller runs a helper pod on that node (busybox,
``rm -rf`` of the one directory through a hostPath mount of ``nodePath``), as k3s does; pure
functions here build it.
"""

from __future__ import annotations

import os
from typing import Optional

from pkube.api import storage

DEFAULT_NODE_PATH = "/var/lib/pkube/storage"
HOSTNAME_LABEL = "kubernetes.io/hostname"
HELPER_NAMESPACE = "kube-system"
HELPER_LABEL = "pkube.io/local-path-volume"
HELPER_IMAGE = "busybox"
SUPPORTED_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod")


def cannot_provision(claim: dict, node_name: Optional[str]) -> str:
    """Why ``claim`` cannot get a local-path volume ("" when it can), in k3s's words."""
    if not node_name:
        return "configuration error, no node was specified"
    modes = (claim.get("spec") or {}).get("accessModes") or []
    if any(mode not in SUPPORTED_ACCESS_MODES for mode in modes):
        return "NodePath only supports ReadWriteOnce and ReadWriteOncePod access modes"
    if (claim.get("spec") or {}).get("volumeMode") == "Block":
        return "local-path does not support block volumes"
    return ""


def volume_name(claim: dict) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def volume_directory(claim: dict, storage_class: dict) -> str:
    meta = claim["metadata"]
    base = ((storage_class.get("parameters") or {}).get("nodePath")) or DEFAULT_NODE_PATH
    return os.path.join(base, f"{volume_name(claim)}_{meta.get('namespace')}_{meta['name']}")


def provisioned_volume(claim: dict, storage_class: dict, node_name: str) -> dict:
    """The PersistentVolume for ``claim`` on ``node_name``, pre-bound to the claim."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or "0"
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim),
                     "annotations": {storage.ANN_PROVISIONED_BY: storage.LOCAL_PATH_PROVISIONER,
                                     storage.ANN_BOUND_BY_CONTROLLER: "yes"}},
        "spec": {
            "capacity": {"storage": requested},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": "Filesystem",
            "hostPath": {"path": volume_directory(claim, storage_class), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node_name]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta.get("namespace"),
                         "name": meta["name"], "uid": meta.get("uid")},
        },
    }


def is_local_path(volume: dict) -> bool:
    annotations = volume["metadata"].get("annotations") or {}
    return annotations.get(storage.ANN_PROVISIONED_BY) == storage.LOCAL_PATH_PROVISIONER


def volume_node(volume: dict) -> Optional[str]:
    """The node of a local-path volume (from the affinity it was made with)."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == HOSTNAME_LABEL and expression.get("operator") == "In" \
                    and len(expression.get("values") or []) == 1:
                return expression["values"][0]
    return None


def helper_pod_name(volume_name_: str) -> str:
    return f"helper-pod-delete-{volume_name_}"[:253]


def delete_helper_pod(volume: dict) -> dict:
    """The pod that removes a local-path volume's directory on its node (restartPolicy Never:
    Succeeded means the directory is gone). Raises ValueError for a volume without a usable
    path or node (not one of ours)."""
    path, node = storage.volume_host_path(volume), volume_node(volume)
    parent, directory = os.path.split((path or "").rstrip("/"))
    if not path or not node or directory in ("", ".", ".."):
        raise ValueError(f"volume {volume['metadata']['name']}: no local-path directory and node")
    name = volume["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": helper_pod_name(name), "namespace": HELPER_NAMESPACE,
                     "labels": {HELPER_LABEL: name},
                     # owned by the volume: one made again from a stale cache goes with it (GC)
                     "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolume", "name": name,
                                          "uid": volume["metadata"].get("uid")}]},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "helper-pod", "image": HELPER_IMAGE,
                            "command": ["rm", "-rf", f"/data/{directory}"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
        },
    }
