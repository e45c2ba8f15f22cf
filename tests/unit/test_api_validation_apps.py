"""DaemonSet, StatefulSet and ControllerRevision: defaults, and validation naming the field as
Kubernetes does (create and update)."""

import copy

import pytest

from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator
from tests.unit.test_api_validation import set_path


@pytest.fixture(scope="module")
def validator():
    return Validator()


def template():
    return {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def daemonset():
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template()}}


def statefulset():
    spec = template()
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "serviceName": "db", "template": spec,
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}


def test_defaults_as_kubernetes():
    ds = apply_defaults(daemonset())["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["revisionHistoryLimit"] == 10
    assert ds["template"]["spec"]["restartPolicy"] == "Always"
    sts = apply_defaults(statefulset())["spec"]
    assert sts["replicas"] == 1 and sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"


@pytest.mark.parametrize("base", [daemonset, statefulset])
def test_valid_objects_pass(validator, base):
    assert validator.validate(apply_defaults(base())) == []


CASES = [
    (daemonset, "spec.template.metadata.labels", {"app": "y"}, "FieldValueInvalid", "spec.template.metadata.labels"),
    (daemonset, "spec.template.spec.restartPolicy", "Never", "FieldValueNotSupported",
     "spec.template.spec.restartPolicy"),
    (daemonset, "spec.updateStrategy", {"type": "Recreate"}, "FieldValueNotSupported", "spec.updateStrategy.type"),
    (daemonset, "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0,
                                                                                   "maxSurge": 0}},
     "FieldValueRequired", "spec.updateStrategy.rollingUpdate.maxUnavailable"),
    (daemonset, "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1,
                                                                                   "maxSurge": 1}},
     "FieldValueInvalid", "spec.updateStrategy.rollingUpdate.maxSurge"),
    (daemonset, "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "120%"}},
     "FieldValueInvalid", "spec.updateStrategy.rollingUpdate.maxUnavailable"),
    (statefulset, "spec.podManagementPolicy", "Sometimes", "FieldValueNotSupported", "spec.podManagementPolicy"),
    (statefulset, "spec.replicas", -1, "FieldValueInvalid", "spec.replicas"),
    (statefulset, "spec.selector", {"matchLabels": {"app": "y"}}, "FieldValueInvalid",
     "spec.template.metadata.labels"),
    (statefulset, "spec.template.spec.restartPolicy", "OnFailure", "FieldValueNotSupported",
     "spec.template.spec.restartPolicy"),
    (statefulset, "spec.updateStrategy", {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
     "FieldValueInvalid", "spec.updateStrategy.rollingUpdate"),
    (statefulset, "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}},
     "FieldValueInvalid", "spec.updateStrategy.rollingUpdate.partition"),
    (statefulset, "spec.persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Keep"}, "FieldValueNotSupported",
     "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"),
    (statefulset, "spec.volumeClaimTemplates", [{"metadata": {"name": "Bad_Name"}}], "FieldValueInvalid",
     "spec.volumeClaimTemplates[0].metadata.name"),
]


@pytest.mark.parametrize("base, path, value, reason, field", CASES,
                         ids=[f"{c[0].__name__}:{c[1]}={str(c[2])[:30]}" for c in CASES])
def test_invalid_objects_name_the_field(validator, base, path, value, reason, field):
    obj = base()
    set_path(obj, path, value)
    found = validator.validate(apply_defaults(obj))
    assert (reason, field) in [(c["reason"], c["field"]) for c in found], found


def test_a_mount_of_a_claim_template_is_valid_but_of_nothing_is_not(validator):
    obj = statefulset()
    obj["spec"]["volumeClaimTemplates"] = []
    found = validator.validate(apply_defaults(obj))
    assert ("FieldValueNotFound", "spec.template.spec.containers[0].volumeMounts[0].name") in \
        [(c["reason"], c["field"]) for c in found], found


@pytest.mark.parametrize("base, path, value, allowed", [
    (statefulset, "spec.replicas", 5, True),
    (statefulset, "spec.template.spec.containers.0.image", "busybox:2", True),
    (statefulset, "spec.updateStrategy.rollingUpdate.partition", 2, True),
    (statefulset, "spec.serviceName", "other", False),
    (statefulset, "spec.podManagementPolicy", "Parallel", False),
    (daemonset, "spec.template.spec.containers.0.image", "busybox:2", True),
    (daemonset, "spec.selector", {"matchLabels": {"app": "x", "b": "c"}}, False),
])
def test_updates(validator, base, path, value, allowed):
    old = apply_defaults(base())
    new = copy.deepcopy(old)
    set_path(new, path, value)
    found = validator.validate(new, old=old)
    assert (found == []) == allowed, found


def test_controller_revision_needs_a_revision(validator):
    revision = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r", "namespace": "d"},
                "data": {}}
    assert ("FieldValueRequired", "revision") in [(c["reason"], c["field"]) for c in validator.validate(revision)]
    revision["revision"] = 1
    assert validator.validate(revision) == []
