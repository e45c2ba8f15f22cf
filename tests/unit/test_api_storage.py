"""Storage objects: the binder's matching (api.storage), the local-path provisioner's objects,
validation and defaults, table rows and the storage admission plugins."""

import datetime as dt

import pytest

from pkube.api import storage
from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.admission_storage import DefaultStorageClass, StorageObjectInUseProtection, default_class_name
from pkube.apiserver.tables import cells_for, columns_for
from pkube.controllers import localpath

NODE = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "zone": "a"}}}


def volume(name, size="1Gi", modes=("ReadWriteOnce",), cls="", labels=None, claim_ref=None, phase="Available",
           node=None):
    spec = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
            "hostPath": {"path": f"/srv/{name}"}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": {"phase": phase}}


def claim(name="data", size="1Gi", modes=("ReadWriteOnce",), cls="", selector=None, volume_name=None):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, "storageClassName": cls}
    if selector:
        spec["selector"] = selector
    if volume_name:
        spec["volumeName"] = volume_name
    return {"metadata": {"name": name, "namespace": "default", "uid": "u-1"}, "spec": spec}


def pick(c, volumes, node=None):
    found = storage.find_matching_volume(c, volumes, node)
    return found and found["metadata"]["name"]


# ----- matching -----

def test_the_smallest_volume_that_fits_is_chosen():
    volumes = [volume("big", "10Gi"), volume("small", "500Mi"), volume("fit", "2Gi"), volume("exact", "1Gi")]
    assert pick(claim(size="1Gi"), volumes) == "exact"
    assert pick(claim(size="1500Mi"), volumes) == "fit"
    assert pick(claim(size="20Gi"), volumes) is None


@pytest.mark.parametrize("c, volumes, expected", [
    (claim(modes=["ReadWriteMany"]), [volume("rwo"), volume("rwx", modes=["ReadWriteOnce", "ReadWriteMany"])], "rwx"),
    (claim(cls="fast"), [volume("none"), volume("slow", cls="slow"), volume("fast", cls="fast", size="5Gi")], "fast"),
    (claim(), [volume("classed", cls="fast"), volume("plain", size="3Gi")], "plain"),
    (claim(selector={"matchLabels": {"tier": "db"}}), [volume("web", labels={"tier": "web"}),
                                                       volume("db", size="2Gi", labels={"tier": "db"})], "db"),
    (claim(), [volume("taken", claim_ref={"namespace": "default", "name": "other"}),
               volume("released", phase="Released"), volume("free", size="4Gi")], "free"),
    (claim(), [volume("any"), volume("mine", size="9Gi", claim_ref={"namespace": "default", "name": "data"})],
     "mine"),
    (claim(volume_name="named"), [volume("small"), volume("named", size="3Gi")], "named"),
])
def test_access_modes_class_selector_and_claim_refs(c, volumes, expected):
    assert pick(c, volumes) == expected


def test_a_volume_with_node_affinity_fits_only_its_node():
    volumes = [volume("elsewhere", node="n2"), volume("here", size="2Gi", node="n1")]
    assert pick(claim(), volumes, NODE) == "here"
    assert pick(claim(), volumes[:1], NODE) is None
    assert storage.node_affinity_allows(volumes[0], None)


# ----- local-path -----

def test_the_local_path_volume_is_pre_bound_and_pinned_to_the_selected_node():
    c = claim(cls="local-path")
    cls = {"metadata": {"name": "local-path"}, "provisioner": storage.LOCAL_PATH_PROVISIONER,
           "reclaimPolicy": "Delete", "parameters": {"nodePath": "/var/lib/pkube-x/storage"}}
    pv = localpath.provisioned_volume(c, cls, "n1")
    assert pv["metadata"]["name"] == "pvc-u-1"
    assert pv["spec"]["hostPath"] == {"path": "/var/lib/pkube-x/storage/pvc-u-1_default_data",
                                      "type": "DirectoryOrCreate"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert storage.find_matching_volume(c, [pv], NODE) is pv
    assert localpath.volume_node(pv) == "n1"
    helper = localpath.delete_helper_pod(pv)
    assert helper["spec"]["nodeName"] == "n1"
    assert helper["spec"]["containers"][0]["command"] == ["rm", "-rf", "/data/pvc-u-1_default_data"]
    assert helper["spec"]["volumes"][0]["hostPath"]["path"] == "/var/lib/pkube-x/storage"


def test_local_path_needs_a_node_and_a_single_node_access_mode():
    assert localpath.cannot_provision(claim(), None) == "configuration error, no node was specified"
    assert "ReadWriteOnce" in localpath.cannot_provision(claim(modes=["ReadWriteMany"]), "n1")
    assert localpath.cannot_provision(claim(), "n1") == ""


# ----- validation and defaults -----

@pytest.fixture(scope="module")
def validator():
    return Validator()


def messages(found):
    return {c["field"]: c["message"] for c in found}


def full(obj, kind, api_version="v1"):
    return {"apiVersion": api_version, "kind": kind, **obj}


def test_defaults():
    pv = apply_defaults(full(volume("v"), "PersistentVolume"))
    assert (pv["spec"]["persistentVolumeReclaimPolicy"], pv["spec"]["volumeMode"]) == ("Retain", "Filesystem")
    assert apply_defaults(full(claim(), "PersistentVolumeClaim"))["spec"]["volumeMode"] == "Filesystem"
    sc = apply_defaults({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                         "metadata": {"name": "s"}, "provisioner": "x.io/y"})
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")


def test_invalid_volumes_and_claims_name_the_field(validator):
    bad = full(volume("v"), "PersistentVolume")
    bad["spec"].update(accessModes=[], persistentVolumeReclaimPolicy="Keep")
    bad["spec"].pop("hostPath")
    found = messages(validator.validate(bad))
    assert found["spec.accessModes"].startswith("Required value")
    assert found["spec.persistentVolumeReclaimPolicy"].startswith('Unsupported value: "Keep"')
    assert found["spec"] == "Required value: must specify a volume type"
    c = full(claim(), "PersistentVolumeClaim")
    del c["spec"]["resources"]
    assert "spec.resources[storage]" in messages(validator.validate(c))
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"},
          "provisioner": "x.io/y", "volumeBindingMode": "Later"}
    assert messages(validator.validate(sc))["volumeBindingMode"].startswith('Unsupported value: "Later"')


def test_a_claim_spec_is_immutable_but_its_request_may_grow(validator):
    old = apply_defaults(full(claim(), "PersistentVolumeClaim"))
    grown = apply_defaults(full(claim(size="2Gi"), "PersistentVolumeClaim"))
    shrunk = apply_defaults(full(claim(size="500Mi"), "PersistentVolumeClaim"))
    bound = apply_defaults(full(claim(volume_name="pv-1"), "PersistentVolumeClaim"))
    other_modes = apply_defaults(full(claim(modes=["ReadWriteMany"]), "PersistentVolumeClaim"))
    assert validator.validate(grown, old) == []
    assert validator.validate(bound, old) == []
    assert "spec.resources.requests.storage" in messages(validator.validate(shrunk, old))
    assert messages(validator.validate(other_modes, old))["spec"].startswith("Forbidden: spec is immutable")


def test_storage_class_parameters_are_immutable(validator):
    old = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"},
           "provisioner": "x.io/y", "parameters": {"a": "1"}}
    new = {**old, "parameters": {"a": "2"}}
    assert messages(validator.validate(new, old))["parameters"] == "Forbidden: updates to parameters are forbidden."


# ----- tables -----

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_table_rows_as_kubectl_prints_them():
    assert [c.name for c in columns_for("persistentvolumes") if not c.priority] == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age"]
    pv = volume("pv-1", "5Gi", modes=["ReadWriteOnce", "ReadOnlyMany"], cls="fast", phase="Bound",
                claim_ref={"namespace": "default", "name": "data"})
    pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    assert cells_for("persistentvolumes", pv, NOW)[:7] == ["pv-1", "5Gi", "RWO,ROX", "Retain", "Bound",
                                                          "default/data", "fast"]
    pending, bound = claim(cls="fast"), claim(cls="fast", volume_name="pv-1")
    pending["status"] = {"phase": "Pending"}
    bound["status"] = {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}
    assert cells_for("persistentvolumeclaims", pending, NOW)[:6] == ["data", "Pending", "", "", "", "fast"]
    assert cells_for("persistentvolumeclaims", bound, NOW)[:6] == ["data", "Bound", "pv-1", "5Gi", "RWO", "fast"]
    sc = {"metadata": {"name": "local-path", "annotations": {storage.ANN_DEFAULT_CLASS: "true"}},
          "provisioner": storage.LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
          "volumeBindingMode": "WaitForFirstConsumer"}
    assert cells_for("storageclasses", sc, NOW)[:5] == ["local-path (default)", "pkube.io/local-path", "Delete",
                                                        "WaitForFirstConsumer", "false"]


# ----- admission -----

class Target:
    def __init__(self, kind):
        self.info = type("Info", (), {"builtin_kind": kind})()
        self.subresource = None
        self.namespace = "default"


def created(kind, obj):
    request = AdmissionRequest(CREATE, Target(kind), obj, None, None)
    plugin = DefaultStorageClass(store=None)
    plugin.objects = {"slow": {"metadata": {"name": "slow"}},
                      "local-path": {"metadata": {"name": "local-path", "creationTimestamp": "2026-01-01T00:00:00Z",
                                                  "annotations": {storage.ANN_DEFAULT_CLASS: "true"}}}}
    plugin.mutate(request)
    StorageObjectInUseProtection().mutate(request)
    return request.obj


def test_a_claim_without_a_class_gets_the_default_one_and_the_finalizer():
    c = claim()
    del c["spec"]["storageClassName"]
    c = created("PersistentVolumeClaim", c)
    assert c["spec"]["storageClassName"] == "local-path"
    assert c["metadata"]["finalizers"] == [storage.PVC_PROTECTION]
    assert created("PersistentVolumeClaim", claim(cls=""))["spec"]["storageClassName"] == ""
    assert created("PersistentVolumeClaim", claim(cls="slow"))["spec"]["storageClassName"] == "slow"
    assert created("PersistentVolume", volume("v"))["metadata"]["finalizers"] == [storage.PV_PROTECTION]


def test_the_newest_default_class_wins_and_updates_are_left_alone():
    older = {"metadata": {"name": "a", "creationTimestamp": "2025-01-01T00:00:00Z",
                          "annotations": {storage.ANN_DEFAULT_CLASS: "true"}}}
    newer = {"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z",
                          "annotations": {storage.ANN_DEFAULT_CLASS: "true"}}}
    assert default_class_name([older, newer, {"metadata": {"name": "c"}}]) == "b"
    assert default_class_name([{"metadata": {"name": "c"}}]) is None
    c = claim()
    del c["spec"]["storageClassName"]
    request = AdmissionRequest(UPDATE, Target("PersistentVolumeClaim"), c, claim(), None)
    StorageObjectInUseProtection().mutate(request)
    assert "finalizers" not in c["metadata"]
