"""PersistentVolumes, claims and classes as the binder, the scheduler and the kubelet read them.

Pure functions over the wire dicts, shared by the PV controller (``controllers.persistentvolume``),
the scheduler's volume-binding plugin and the storage admission plugins: which volume fits a claim
(Kubernetes' ``findMatchingVolume``: pre-bound first, else the smallest that fits), the names of
the annotations and finalizers, and a volume's node affinity against a node.
"""

from __future__ import annotations

from typing import Iterable, Optional

from pkube.api.quantity import QuantityError, memory_bytes
from pkube.api.selectors import (DOES_NOT_EXIST, EXISTS, GREATER, IN, LESS, NOT_IN, LabelSelector,
                           SelectorError, label_selector_from_dict, make_requirement)

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
LOCAL_PATH_PROVISIONER = "pkube.io/local-path"
LOCAL_PATH_CLASS = "local-path"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
IMMEDIATE = "Immediate"

_NODE_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST,
                   "Gt": GREATER, "Lt": LESS}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def claim_class(claim: dict) -> str:
    """The claim's class name ("" = no class), the beta annotation winning as upstream."""
    annotated = (_meta(claim).get("annotations") or {}).get(ANN_BETA_STORAGE_CLASS)
    return annotated if annotated is not None else (_spec(claim).get("storageClassName") or "")


def volume_class(volume: dict) -> str:
    annotated = (_meta(volume).get("annotations") or {}).get(ANN_BETA_STORAGE_CLASS)
    return annotated if annotated is not None else (_spec(volume).get("storageClassName") or "")


def is_default_class(storage_class: dict) -> bool:
    annotations = _meta(storage_class).get("annotations") or {}
    return "true" in (annotations.get(ANN_DEFAULT_CLASS), annotations.get(ANN_BETA_DEFAULT_CLASS))


def binding_mode(storage_class: Optional[dict]) -> str:
    return (storage_class or {}).get("volumeBindingMode") or IMMEDIATE


def requested_bytes(claim: dict) -> int:
    """spec.resources.requests.storage in bytes (0 when missing or malformed)."""
    return _bytes(((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage"))


def capacity_bytes(volume: dict) -> int:
    return _bytes((_spec(volume).get("capacity") or {}).get("storage"))


def _bytes(quantity) -> int:
    try:
        return memory_bytes(quantity) if quantity is not None else 0
    except QuantityError:
        return 0


def claim_ref_names(volume: dict, claim: dict) -> bool:
    """Whether the volume's claimRef points at ``claim`` (by namespace/name, and uid when set)."""
    ref, meta = _spec(volume).get("claimRef") or {}, _meta(claim)
    if not ref or ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def is_bound_to(volume: dict, claim: dict) -> bool:
    return claim_ref_names(volume, claim) and _spec(claim).get("volumeName") == _meta(volume).get("name")


def _node_term_matches(term: dict, labels: dict, name: str) -> bool:
    """One NodeSelectorTerm (matchExpressions on labels AND matchFields on metadata.name)."""
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    try:
        by_label = LabelSelector([make_requirement(e["key"], _NODE_OPERATORS[e["operator"]], e.get("values") or ())
                                  for e in expressions])
        by_field = LabelSelector([make_requirement(f["key"], _NODE_OPERATORS[f["operator"]], f.get("values") or ())
                                  for f in fields])
    except (KeyError, SelectorError):
        return False
    return by_label.matches(labels) and by_field.matches({"metadata.name": name})


def node_affinity_allows(volume: dict, node: Optional[dict]) -> bool:
    """Whether the volume's required nodeAffinity admits ``node`` (True without affinity or
    without a node to check against)."""
    required = (_spec(volume).get("nodeAffinity") or {}).get("required")
    if not required or node is None:
        return True
    labels, name = _meta(node).get("labels") or {}, _meta(node).get("name") or ""
    return any(_node_term_matches(t, labels, name) for t in required.get("nodeSelectorTerms") or [])


def volume_fits(volume: dict, claim: dict, node: Optional[dict] = None) -> bool:
    """Class, access modes, volume mode, capacity, the claim's selector and the node."""
    spec, claim_spec = _spec(volume), _spec(claim)
    if volume_class(volume) != claim_class(claim):
        return False
    if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (claim_spec.get("volumeMode") or "Filesystem"):
        return False
    if capacity_bytes(volume) < requested_bytes(claim):
        return False
    selector = claim_spec.get("selector")
    if selector is not None:
        try:
            if not label_selector_from_dict(selector).matches(_meta(volume).get("labels")):
                return False
        except SelectorError:
            return False
    return node_affinity_allows(volume, node)


def _free_for(volume: dict, claim: dict) -> bool:
    """Not being deleted, and either unclaimed (and Available) or claimed by this very claim."""
    if _meta(volume).get("deletionTimestamp"):
        return False
    if _spec(volume).get("claimRef"):
        return claim_ref_names(volume, claim)
    return ((volume.get("status") or {}).get("phase") or "Available") in ("Available", "Pending")


def find_matching_volume(claim: dict, volumes: Iterable[dict], node: Optional[dict] = None) -> Optional[dict]:
    """The volume to bind ``claim`` to: one pre-bound to it (its claimRef names the claim) when
    it fits, else the smallest free volume that fits; None when none does. A claim that names
    a volume (spec.volumeName) only matches that one."""
    wanted = _spec(claim).get("volumeName")
    best = None
    for volume in volumes:
        if wanted and _meta(volume).get("name") != wanted:
            continue
        if not _free_for(volume, claim) or not volume_fits(volume, claim, node):
            continue
        if _spec(volume).get("claimRef"):
            return volume
        if best is None or capacity_bytes(volume) < capacity_bytes(best):
            best = volume
    return best


def claim_names_of_pod(pod: dict) -> list[str]:
    """The claim names a pod's volumes refer to, in order."""
    return [v["persistentVolumeClaim"].get("claimName") or "" for v in _spec(pod).get("volumes") or []
            if isinstance(v, dict) and isinstance(v.get("persistentVolumeClaim"), dict)]


def volume_host_path(volume: dict) -> Optional[str]:
    """The host directory of a local or hostPath volume; None for any other source."""
    spec = _spec(volume)
    for source in ("local", "hostPath"):
        if isinstance(spec.get(source), dict) and spec[source].get("path"):
            return spec[source]["path"]
    return None
