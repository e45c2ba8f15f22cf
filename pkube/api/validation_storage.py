"""Semantic checks and defaults of PersistentVolumes, PersistentVolumeClaims and StorageClasses,
as Kubernetes' pkg/apis/core/validation (ValidatePersistentVolume*, ...Claim*) and
pkg/apis/storage/validation do on create and update, with upstream's field paths and words.

Create checks are registered in ``api.validation_specs.BY_KIND``, update checks in
``api.validation._UPDATE_BY_KIND``, defaults in ``api.defaults._BY_KIND``. Import
``api.validation`` first, not this module: it takes its helpers from ``validation_specs``.
"""

from __future__ import annotations

from pkube.api import causes, names
from pkube.api.quantity import QuantityError, parse_quantity
from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.api.validation_specs import as_dict, as_list, one_of, syntax

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
CLASS_RECLAIM_POLICIES = ("Delete", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
# The persistent volume sources of core/v1 (one, exactly, per volume).
VOLUME_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc",
                  "flexVolume", "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local",
                  "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO",
                  "storageos", "vsphereVolume")
PVC_IMMUTABLE = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"


# --- shared ------------------------------------------------------------------------------------

def _access_modes(value, path: str) -> list:
    modes = as_list(value)
    if not modes:
        return [causes.required(path, "at least 1 access mode is required")]
    found = [causes.not_supported(path, m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        found.append(causes.forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return found


def _storage_quantity(value, path: str) -> list:
    if value is None:
        return [causes.required(path, "")]
    try:
        amount = parse_quantity(value)
    except QuantityError as error:
        return [causes.invalid(path, value, str(error))]
    if amount <= 0:
        return [causes.invalid(path, value, "must be greater than zero")]
    return []


def _class_name(value, path: str) -> list:
    return syntax(path, value, names.dns1123_subdomain) if value else []


# --- PersistentVolume --------------------------------------------------------------------------

def persistent_volume(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = _access_modes(spec.get("accessModes"), "spec.accessModes")
    capacity = as_dict(spec.get("capacity"))
    if not capacity:
        found.append(causes.required("spec.capacity", ""))
    for key in capacity:
        if key != "storage":
            found.append(causes.not_supported("spec.capacity", key, ("storage",)))
    if capacity:
        found += _storage_quantity(capacity.get("storage"), "spec.capacity[storage]")
    found += one_of("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"), RECLAIM_POLICIES)
    found += one_of("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
    found += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    found += _volume_source(spec)
    return found


def _volume_source(spec: dict) -> list:
    sources = [s for s in VOLUME_SOURCES if spec.get(s) is not None]
    if not sources:
        return [causes.required("spec", "must specify a volume type")]
    if len(sources) > 1:
        return [causes.forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type")]
    source = sources[0]
    found = []
    if source in ("hostPath", "local") and not as_dict(spec.get(source)).get("path"):
        found.append(causes.required(f"spec.{source}.path", ""))
    if source == "local" and not as_dict(spec.get("nodeAffinity")).get("required"):
        found.append(causes.required("spec.nodeAffinity", "Local volume requires node affinity"))
    if source == "hostPath" and ".." in str(as_dict(spec.get("hostPath")).get("path") or "").split("/"):
        found.append(causes.invalid("spec.hostPath.path", spec["hostPath"]["path"], "must not contain '..'"))
    return found


def persistent_volume_update(new: dict, old: dict) -> list:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    found = []
    if any(new_spec.get(s) != old_spec.get(s) for s in VOLUME_SOURCES):
        found.append(causes.forbidden("spec.persistentvolumesource",
                                      "spec.persistentvolumesource is immutable after creation"))
    if (new_spec.get("volumeMode") or "Filesystem") != (old_spec.get("volumeMode") or "Filesystem"):
        found.append(causes.invalid("spec.volumeMode", new_spec.get("volumeMode"), "field is immutable"))
    if old_spec.get("nodeAffinity") and new_spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        found.append(causes.invalid("spec.nodeAffinity", new_spec.get("nodeAffinity"), "field is immutable"))
    return found


# --- PersistentVolumeClaim ---------------------------------------------------------------------

def persistent_volume_claim(obj: dict) -> list:
    spec = as_dict(obj.get("spec"))
    found = _access_modes(spec.get("accessModes"), "spec.accessModes")
    requests = as_dict(as_dict(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        found.append(causes.required("spec.resources[storage]", ""))
    else:
        found += _storage_quantity(requests.get("storage"), "spec.resources[storage]")
    found += one_of("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES)
    found += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    if spec.get("selector") is not None:
        try:
            label_selector_from_dict(spec["selector"])
        except SelectorError as error:
            found.append(causes.invalid("spec.selector", spec["selector"], str(error)))
    return found


def persistent_volume_claim_update(new: dict, old: dict) -> list:
    """Only resources.requests may change (storage may only grow), volumeName may be set once
    (binding) and storageClassName may be set on a claim that had none."""
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if new_spec == old_spec:
        return []
    found = _storage_growth(new_spec, old_spec)
    comparable_new, comparable_old = dict(new_spec), dict(old_spec)
    comparable_new.pop("resources", None)
    comparable_old.pop("resources", None)
    if not old_spec.get("volumeName"):
        comparable_new.pop("volumeName", None)
        comparable_old.pop("volumeName", None)
    if old_spec.get("storageClassName") is None:
        comparable_new.pop("storageClassName", None)
    if {k: v for k, v in comparable_new.items() if v is not None} != \
            {k: v for k, v in comparable_old.items() if v is not None}:
        found.append(causes.forbidden("spec", PVC_IMMUTABLE))
    return found


def _storage_growth(new_spec: dict, old_spec: dict) -> list:
    new_size = as_dict(as_dict(new_spec.get("resources")).get("requests")).get("storage")
    old_size = as_dict(as_dict(old_spec.get("resources")).get("requests")).get("storage")
    try:
        if new_size is not None and old_size is not None and parse_quantity(new_size) < parse_quantity(old_size):
            return [causes.forbidden("spec.resources.requests.storage", "field can not be less than previous value")]
    except QuantityError:
        return []
    return []


# --- StorageClass -------------------------------------------------------------------------------

def storage_class(obj: dict) -> list:
    provisioner = obj.get("provisioner")
    found = []
    if not provisioner:
        found.append(causes.required("provisioner", ""))
    else:
        found += syntax("provisioner", provisioner, names.qualified_name)
    found += one_of("reclaimPolicy", obj.get("reclaimPolicy"), CLASS_RECLAIM_POLICIES)
    found += one_of("volumeBindingMode", obj.get("volumeBindingMode"), BINDING_MODES)
    if len(as_dict(obj.get("parameters"))) > 512:
        found.append(causes.too_long("parameters", 512, "parameters"))
    return found


def storage_class_update(new: dict, old: dict) -> list:
    found = []
    for field in ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"):
        if new.get(field) != old.get(field):
            found.append(causes.forbidden(field, f"updates to {field} are forbidden."))
    return found


# --- defaults -----------------------------------------------------------------------------------

def default_persistent_volume(volume: dict) -> None:
    spec = volume.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        if isinstance(spec.get("hostPath"), dict):
            spec["hostPath"].setdefault("type", "")


def default_persistent_volume_claim(claim: dict) -> None:
    spec = claim.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")


def default_storage_class(storage_class_: dict) -> None:
    storage_class_.setdefault("reclaimPolicy", "Delete")
    storage_class_.setdefault("volumeBindingMode", "Immediate")
