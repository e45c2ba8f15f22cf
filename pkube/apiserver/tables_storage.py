"""Table columns of PersistentVolumes, PersistentVolumeClaims and StorageClasses, as kubectl
1.32 prints them (Kubernetes' printers.go: access modes as RWO,ROX,RWX,RWOP, "Terminating"
while deleted, "(default)" after the default class's name). Imported at the end of
``apiserver.tables``; registers itself in its ``PRINTERS``."""

from __future__ import annotations

import datetime

from pkube.api import storage
from pkube.apiserver import tables
from pkube.apiserver.tables import AGE, NAME, Column, _meta, age_since

UNSET = "<unset>"
SHORT_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                      ("ReadWriteOncePod", "RWOP"))
_VOLUME_ATTRIBUTES_CLASS = Column("VolumeAttributesClass", description="VolumeAttributesClass of the volume")
_VOLUME_MODE = Column("VolumeMode", priority=1, description="VolumeMode of the volume")

PV_COLUMNS = (
    NAME,
    Column("Capacity", description="capacity is the description of the persistent volume's resources and "
                                   "capacity."),
    Column("Access Modes", description="accessModes contains all ways the volume can be mounted."),
    Column("Reclaim Policy", description="persistentVolumeReclaimPolicy defines what happens to a persistent "
                                         "volume when released from its claim."),
    Column("Status", description="phase indicates if a volume is available, bound to a claim, or released "
                                 "by a claim."),
    Column("Claim", description="claimRef is part of a bi-directional binding between PersistentVolume and "
                                "PersistentVolumeClaim."),
    Column("StorageClass", description="storageClassName is the name of StorageClass to which this persistent "
                                       "volume belongs."),
    _VOLUME_ATTRIBUTES_CLASS,
    Column("Reason", description="reason is a brief CamelCase string that describes any failure and is meant "
                                 "for machine parsing and tidy display in the CLI."),
    AGE, _VOLUME_MODE,
)

PVC_COLUMNS = (
    NAME,
    Column("Status", description="phase represents the current phase of PersistentVolumeClaim."),
    Column("Volume", description="volumeName is the binding reference to the PersistentVolume backing this "
                                 "claim."),
    Column("Capacity", description="capacity represents the actual resources of the underlying volume."),
    Column("Access Modes", description="accessModes contains the desired access modes the volume should have."),
    Column("StorageClass", description="storageClassName is the name of the StorageClass required by the "
                                       "claim."),
    _VOLUME_ATTRIBUTES_CLASS,
    AGE, _VOLUME_MODE,
)

STORAGECLASS_COLUMNS = (
    NAME,
    Column("Provisioner", description="provisioner indicates the type of the provisioner."),
    Column("ReclaimPolicy", description="reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
                                        "PersistentVolumes of this storage class."),
    Column("VolumeBindingMode", description="volumeBindingMode indicates how PersistentVolumeClaims should be "
                                            "provisioned and bound."),
    Column("AllowVolumeExpansion", description="allowVolumeExpansion shows whether the storage class allow "
                                               "volume expand."),
    AGE,
)


def access_modes_text(modes) -> str:
    modes = set(modes or [])
    return ",".join(short for mode, short in SHORT_ACCESS_MODES if mode in modes)


def _phase(obj: dict) -> str:
    return "Terminating" if _meta(obj).get("deletionTimestamp") else (obj.get("status") or {}).get("phase", "")


def _pv_cells(obj: dict, now: datetime.datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref.get("name") else ""
    return [_meta(obj).get("name", ""), str((spec.get("capacity") or {}).get("storage", "")),
            access_modes_text(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            _phase(obj), claim, storage.volume_class(obj), spec.get("volumeAttributesClassName") or UNSET,
            status.get("reason", ""), age_since(_meta(obj).get("creationTimestamp"), now),
            spec.get("volumeMode") or "<unset>"]


def _pvc_cells(obj: dict, now: datetime.datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    capacity = modes = ""
    if spec.get("volumeName"):
        capacity = str((status.get("capacity") or {}).get("storage", ""))
        modes = access_modes_text(status.get("accessModes"))
    return [_meta(obj).get("name", ""), _phase(obj), spec.get("volumeName") or "", capacity, modes,
            storage.claim_class(obj), spec.get("volumeAttributesClassName") or UNSET,
            age_since(_meta(obj).get("creationTimestamp"), now), spec.get("volumeMode") or "<unset>"]


def _storageclass_cells(obj: dict, now: datetime.datetime) -> list:
    name = _meta(obj).get("name", "")
    if storage.is_default_class(obj):
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", str(bool(obj.get("allowVolumeExpansion"))).lower(),
            age_since(_meta(obj).get("creationTimestamp"), now)]


tables.PRINTERS["persistentvolumes"] = (PV_COLUMNS, _pv_cells)
tables.PRINTERS["persistentvolumeclaims"] = (PVC_COLUMNS, _pvc_cells)
tables.PRINTERS["storageclasses"] = (STORAGECLASS_COLUMNS, _storageclass_cells)
