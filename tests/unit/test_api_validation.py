"""Validation: schema problems, Kubernetes' semantic rules and immutable fields, with the
messages users see from a real apiserver (`kubectl apply` of an invalid manifest)."""

import copy

import pytest

from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator, format_invalid


@pytest.fixture(scope="module")
def validator():
    return Validator()


def pod():
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                     "ports": [{"containerPort": 80, "name": "http"}],
                                     "env": [{"name": "MODE", "value": "prod"}],
                                     "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "nvidia.com/gpu": "1"}},
                                     "livenessProbe": {"httpGet": {"port": "http", "path": "/"}},
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}


def tolerating_pod():
    obj = pod()
    obj["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    return obj


def deployment():
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


def service():
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def valid_objects():
    return [
        pod(), deployment(), service(),
        {**deployment(), "kind": "ReplicaSet"},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"app.conf": "x=1"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example.com"},
         "spec": {"podCIDR": "10.244.1.0/24"}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
         "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-x"},
         "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"},
         "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1234"},
         "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started"},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"},
         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    ]


@pytest.mark.parametrize("obj", valid_objects(), ids=lambda o: o["kind"])
def test_valid_objects_pass(validator, obj):
    assert validator.validate(obj, strict=True) == []
    assert validator.validate(apply_defaults(copy.deepcopy(obj)), strict=True) == []


def set_path(obj, path, value):
    """Set a dotted path ('spec.containers.0.name'); value DELETE removes it."""
    *parents, last = path.split(".")
    target = obj
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    if isinstance(target, list):
        last = int(last)
    if value is DELETE:
        del target[last]
    elif isinstance(target, list) and last == len(target):
        target.append(value)
    else:
        target[last] = value


DELETE = object()

CASES = [
    # (base, path, value, reason, field)
    (pod, "metadata.name", "Foo_Bar", "FieldValueInvalid", "metadata.name"),
    (pod, "metadata.name", "a" * 254, "FieldValueInvalid", "metadata.name"),
    (pod, "metadata.name", DELETE, "FieldValueRequired", "metadata.name"),
    (pod, "metadata.generateName", "Bad_", "FieldValueInvalid", "metadata.generateName"),
    (pod, "metadata.namespace", "Not_OK", "FieldValueInvalid", "metadata.namespace"),
    (pod, "metadata.labels", {"bad key": "x"}, "FieldValueInvalid", "metadata.labels"),
    (pod, "metadata.labels", {"app": "-x-"}, "FieldValueInvalid", "metadata.labels"),
    (pod, "metadata.annotations", {"a/b/c": "x"}, "FieldValueInvalid", "metadata.annotations"),
    (pod, "metadata.annotations", {"big": "x" * (256 * 1024)}, "FieldValueTooLong", "metadata.annotations"),
    (pod, "spec.containers", [], "FieldValueRequired", "spec.containers"),
    (pod, "spec.containers.0.name", "Web", "FieldValueInvalid", "spec.containers[0].name"),
    (pod, "spec.containers.0.name", DELETE, "FieldValueRequired", "spec.containers[0].name"),
    (pod, "spec.containers.0.image", "", "FieldValueRequired", "spec.containers[0].image"),
    (pod, "spec.containers.0.ports.0.containerPort", 70000, "FieldValueInvalid",
     "spec.containers[0].ports[0].containerPort"),
    (pod, "spec.containers.0.ports.0.containerPort", "80", "FieldValueTypeInvalid",
     "spec.containers[0].ports[0].containerPort"),
    (pod, "spec.containers.0.ports.0.protocol", "HTTP", "FieldValueNotSupported",
     "spec.containers[0].ports[0].protocol"),
    (pod, "spec.containers.0.ports.0.name", "http--x", "FieldValueInvalid",
     "spec.containers[0].ports[0].name"),
    (pod, "spec.containers.0.env.0.name", "1BAD", "FieldValueInvalid", "spec.containers[0].env[0].name"),
    (pod, "spec.containers.0.volumeMounts.0.name", "nope", "FieldValueNotFound",
     "spec.containers[0].volumeMounts[0].name"),
    (pod, "spec.containers.0.resources.requests.cpu", "2", "FieldValueInvalid",
     "spec.containers[0].resources.requests"),
    (pod, "spec.containers.0.resources.limits.cpu", "lots", "FieldValueInvalid",
     "spec.containers[0].resources.limits[cpu]"),
    (pod, "spec.containers.0.resources.limits.memory", "-1Gi", "FieldValueInvalid",
     "spec.containers[0].resources.limits[memory]"),
    (pod, "spec.volumes.0.name", "Data", "FieldValueInvalid", "spec.volumes[0].name"),
    (pod, "spec.volumes.0.configMap", {"name": "c"}, "FieldValueForbidden", "spec.volumes[0].configMap"),
    (pod, "spec.containers.0.resources.limits.gpu", "1", "FieldValueInvalid",
     "spec.containers[0].resources.limits[gpu]"),
    (pod, "spec.containers.0.livenessProbe", {"periodSeconds": 5}, "FieldValueRequired",
     "spec.containers[0].livenessProbe"),
    (pod, "spec.containers.0.livenessProbe", {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
     "FieldValueForbidden", "spec.containers[0].livenessProbe.tcpSocket"),
    (pod, "spec.containers.0.readinessProbe", {"httpGet": {"port": 0}}, "FieldValueInvalid",
     "spec.containers[0].readinessProbe.httpGet.port"),
    (pod, "spec.containers.0.readinessProbe", {"httpGet": {"port": 80}, "periodSeconds": 0}, "FieldValueInvalid",
     "spec.containers[0].readinessProbe.periodSeconds"),
    (pod, "spec.restartPolicy", "Sometimes", "FieldValueNotSupported", "spec.restartPolicy"),
    (pod, "spec.dnsPolicy", "Google", "FieldValueNotSupported", "spec.dnsPolicy"),
    (pod, "spec.activeDeadlineSeconds", 0, "FieldValueInvalid", "spec.activeDeadlineSeconds"),
    (pod, "spec.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}],
     "FieldValueInvalid", "spec.tolerations[0].operator"),
    (pod, "spec.tolerations", [{"key": "k", "effect": "Sometimes"}],
     "FieldValueNotSupported", "spec.tolerations[0].effect"),
    (pod, "spec.nodeSelector", {"disk": "fast ssd"}, "FieldValueInvalid", "spec.nodeSelector"),
    (pod, "spec", "nonsense", "FieldValueTypeInvalid", "spec"),
    (deployment, "spec.selector", DELETE, "FieldValueRequired", "spec.selector"),
    (deployment, "spec.selector", {}, "FieldValueInvalid", "spec.selector"),
    (deployment, "spec.selector.matchLabels", {"app": "db"}, "FieldValueInvalid",
     "spec.template.metadata.labels"),
    (deployment, "spec.selector.matchExpressions", [{"key": "a", "operator": "Near"}],
     "FieldValueInvalid", "spec.selector"),
    (deployment, "spec.replicas", -1, "FieldValueInvalid", "spec.replicas"),
    (deployment, "spec.template.spec.restartPolicy", "Never", "FieldValueNotSupported",
     "spec.template.spec.restartPolicy"),
    (deployment, "spec.template.spec.containers.0.name", "Web", "FieldValueInvalid",
     "spec.template.spec.containers[0].name"),
    (deployment, "spec.strategy", {"type": "Rolling"}, "FieldValueNotSupported", "spec.strategy.type"),
    (deployment, "spec.strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
     "FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable"),
    (deployment, "spec.strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%"}},
     "FieldValueInvalid", "spec.strategy.rollingUpdate.maxSurge"),
    (deployment, "spec.strategy", {"type": "Recreate", "rollingUpdate": {}},
     "FieldValueForbidden", "spec.strategy.rollingUpdate"),
    (deployment, "spec.progressDeadlineSeconds", 0, "FieldValueInvalid", "spec.progressDeadlineSeconds"),
    (service, "metadata.name", "1web", "FieldValueInvalid", "metadata.name"),
    (service, "spec.ports", [], "FieldValueRequired", "spec.ports"),
    (service, "spec.ports.0.port", 0, "FieldValueInvalid", "spec.ports[0].port"),
    (service, "spec.ports.0.port", 65536, "FieldValueInvalid", "spec.ports[0].port"),
    (service, "spec.ports.0.protocol", "ICMP", "FieldValueNotSupported", "spec.ports[0].protocol"),
    (service, "spec.ports.0.targetPort", 0, "FieldValueInvalid", "spec.ports[0].targetPort"),
    (service, "spec.ports.0.nodePort", 30080, "FieldValueForbidden", "spec.ports[0].nodePort"),
    (service, "spec.ports", [{"port": 80}, {"port": 81}], "FieldValueRequired", "spec.ports[1].name"),
    (service, "spec.ports", [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}],
     "FieldValueDuplicate", "spec.ports[1]"),
    (service, "spec.type", "Balanced", "FieldValueNotSupported", "spec.type"),
    (service, "spec.sessionAffinity", "Sticky", "FieldValueNotSupported", "spec.sessionAffinity"),
    (service, "spec.clusterIP", "10.0.0.300", "FieldValueInvalid", "spec.clusterIP"),
    (service, "spec.type", "ExternalName", "FieldValueRequired", "spec.externalName"),
]


@pytest.mark.parametrize("base, path, value, reason, field", CASES,
                         ids=[f"{c[0].__name__}:{c[1]}={str(c[2])[:20]}" for c in CASES])
def test_invalid_objects_name_the_field(validator, base, path, value, reason, field):
    obj = base()
    set_path(obj, path, value)
    found = validator.validate(obj)
    assert (reason, field) in [(c["reason"], c["field"]) for c in found], found


@pytest.mark.parametrize("obj, reason, field", [
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}, "FieldValueInvalid", "metadata.name"),
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "x"}},
     "FieldValueForbidden", "metadata.namespace"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a b": "eA=="}},
     "FieldValueInvalid", "data"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "!!"}},
     "FieldValueInvalid", "data[a]"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls",
      "data": {"tls.crt": "eA=="}}, "FieldValueRequired", "data[tls.key]"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "x" * (1024 * 1024 + 1)}},
     "FieldValueTooLong", ""),
    ({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/33"}},
     "FieldValueInvalid", "spec.podCIDR"),
    ({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
      "subsets": [{"addresses": [{"ip": "nope"}]}]}, "FieldValueInvalid", "subsets[0].addresses[0].ip"),
    ({"apiVersion": "v1", "metadata": {"name": "x"}}, "FieldValueRequired", "kind"),
    ({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": -2}},
     "FieldValueInvalid", "spec.replicas"),
    ({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n"},
      "spec": {"leaseDurationSeconds": 0}}, "FieldValueInvalid", "spec.leaseDurationSeconds"),
    ({"kind": "Pod", "metadata": {"name": "x"}}, "FieldValueRequired", "apiVersion"),
])
def test_other_kinds(validator, obj, reason, field):
    found = validator.validate(obj)
    assert (reason, field) in [(c["reason"], c["field"]) for c in found], found


def test_message_reads_like_kubernetes(validator):
    obj = pod()
    obj["metadata"]["name"] = "Foo_Bar"
    (cause,) = validator.validate(obj)
    assert cause["message"].startswith(
        'Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    assert format_invalid("Pod", "Foo_Bar", [cause]).startswith('Pod "Foo_Bar" is invalid: metadata.name: Invalid')


def test_unknown_fields_only_rejected_when_strict(validator):
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    obj["spec"]["foo"] = 1
    assert validator.validate(obj) == []
    assert sorted(validator.unknown_fields(obj)) == ["spec.foo", "spec.template.spec.containers[0].imagee"]
    strict = validator.validate(obj, strict=True)
    assert {"reason": "FieldValueInvalid", "field": "spec.foo", "message": 'unknown field "spec.foo"'} in strict


def test_null_fields_count_as_unset(validator):
    obj = service()
    obj["spec"]["ports"][0]["targetPort"] = None
    obj["spec"]["clusterIP"] = None
    assert validator.validate(obj) == []


def test_unknown_kind_gets_metadata_checks_only(validator):
    assert validator.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}) == []
    assert validator.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "W"}})


@pytest.mark.parametrize("junk", [None, [], "x", 3, {"kind": 3, "apiVersion": []},
                                  {"apiVersion": "v1", "kind": "Pod", "metadata": []},
                                  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 3}},
                                  {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                                   "spec": {"selector": "app=web", "template": []}},
                                  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                   "spec": {"ports": [None, 3, {"port": "x"}]}}])
def test_junk_never_raises(validator, junk):
    assert validator.validate(junk, old=junk)


# --- updates -----------------------------------------------------------------------------------

def updated(base, path, value):
    old = apply_defaults(base())
    new = copy.deepcopy(old)
    set_path(new, path, value)
    return new, old


@pytest.mark.parametrize("base, path, value", [
    (pod, "spec.containers.0.image", "nginx:1.26"),
    (pod, "spec.activeDeadlineSeconds", 30),
    (pod, "spec.terminationGracePeriodSeconds", 5),
    (pod, "spec.tolerations.2", {"key": "extra", "operator": "Exists"}),
    (pod, "metadata.labels", {"app": "web", "new": "label"}),
    (deployment, "spec.replicas", 5),
    (deployment, "spec.template.spec.containers.0.image", "nginx:2"),
    (service, "spec.ports.0.port", 81),
])
def test_allowed_updates(validator, base, path, value):
    new, old = updated(base, path, value)
    assert validator.validate(new, old=old) == []


@pytest.mark.parametrize("base, path, value, reason, field", [
    (pod, "metadata.name", "other", "FieldValueInvalid", "metadata.name"),
    (pod, "metadata.namespace", "other", "FieldValueInvalid", "metadata.namespace"),
    (pod, "spec.containers.0.name", "renamed", "FieldValueForbidden", "spec"),
    (pod, "spec.restartPolicy", "Never", "FieldValueForbidden", "spec"),
    (pod, "spec.containers.0.env", [], "FieldValueForbidden", "spec"),
    (tolerating_pod, "spec.tolerations", [], "FieldValueForbidden", "spec.tolerations"),
    (deployment, "spec.selector", {"matchLabels": {"app": "web", "x": "y"}}, "FieldValueInvalid", "spec.selector"),
])
def test_forbidden_updates(validator, base, path, value, reason, field):
    new, old = updated(base, path, value)
    found = validator.validate(new, old=old)
    assert (reason, field) in [(c["reason"], c["field"]) for c in found], found


def test_pod_active_deadline_may_only_decrease(validator):
    new, old = updated(pod, "spec.activeDeadlineSeconds", 60)
    old["spec"]["activeDeadlineSeconds"] = 30
    assert [c["field"] for c in validator.validate(new, old=old)] == ["spec.activeDeadlineSeconds"]


def finished_and_again(policy: str, exit_code: int, new_state: dict) -> tuple[dict, dict]:
    """A pod of ``policy`` whose container "web" terminated with ``exit_code`` (old) and a
    status write that puts it in ``new_state`` (new)."""
    old = pod()
    old["spec"]["restartPolicy"] = policy
    old["status"] = {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
        {"name": "web", "image": "nginx:1.25", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": exit_code}}}]}
    new = copy.deepcopy(old)
    new["status"]["phase"] = "Running"
    new["status"]["containerStatuses"][0]["state"] = new_state
    return new, old


@pytest.mark.parametrize("policy, exit_code", [("Never", 0), ("Never", 1), ("OnFailure", 0)])
def test_a_container_that_will_not_restart_stays_terminated(validator, policy, exit_code):
    new, old = finished_and_again(policy, exit_code, {"running": {"startedAt": "2026-12-06T04:00:00Z"}})
    found = validator.validate(new, old=old)
    assert [(c["field"], c["message"]) for c in found] == [
        ("status.containerStatuses[0].state", "Forbidden: may not be transitioned to non-terminated state")]


@pytest.mark.parametrize("policy, exit_code", [("Always", 0), ("Always", 1), ("OnFailure", 1)])
def test_a_container_that_restarts_may_leave_terminated(validator, policy, exit_code):
    new, old = finished_and_again(policy, exit_code, {"waiting": {"reason": "CrashLoopBackOff"}})
    assert validator.validate(new, old=old) == []


def test_uid_and_creation_timestamp_are_immutable(validator):
    old = pod()
    old["metadata"].update(uid="u-1", creationTimestamp="2024-01-01T00:00:00Z")
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "u-2"
    assert [c["field"] for c in validator.validate(new, old=old)] == ["metadata.uid"]


def test_service_cluster_ip_is_immutable_once_set(validator):
    old = service()
    old["spec"]["clusterIP"] = "10.96.0.10"
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.11"
    assert [c["field"] for c in validator.validate(new, old=old)] == ["spec.clusterIP"]
    new["spec"]["clusterIP"] = "10.96.0.10"
    assert validator.validate(new, old=old) == []


def test_immutable_config_map(validator):
    old = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": True}
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    assert [c["reason"] for c in validator.validate(new, old=old)] == ["FieldValueForbidden"]


def corpus():
    """Valid objects, every invalid case above, and junk shapes."""
    objects = valid_objects()
    for base, path, value, _, _ in CASES:
        obj = base()
        set_path(obj, path, value)
        objects.append(obj)
    junk = pod()
    junk["spec"]["containers"][0].update(ports="x", resources={"limits": {"cpu": True}}, extra=1)
    junk["spec"]["volumes"] = [{"name": "v", "secret": {"defaultMode": "rw"}}]
    junk["metadata"]["labels"] = {"a": 3}
    objects += [junk, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                       "spec": {"ports": [{"port": 80, "targetPort": 1.5, "nodePort": None}]}}]
    return objects


def test_compiled_schema_checks_agree_with_jsonschema(validator):
    generic = Validator(compiled=False)
    for obj in corpus():
        for strict in (False, True):
            assert validator.validate(obj, strict=strict) == generic.validate(obj, strict=strict), obj
        assert sorted(validator.unknown_fields(obj)) == sorted(generic.unknown_fields(obj))


def test_pod_stored_before_a_default_existed_can_still_be_updated(validator):
    old = pod()  # as stored by an older server: no defaults at all
    new = apply_defaults(copy.deepcopy(old))
    new["metadata"]["labels"]["touched"] = "yes"
    assert validator.validate(new, old=old) == []


@pytest.mark.parametrize("api_version, kind", [("v1", "../../../etc/x"), ("../v1", "Pod"), ("v1", "Pod/x"),
                                               ("v1", ""), ("a/b/c", "Pod")])
def test_made_up_kinds_find_no_schema(validator, api_version, kind):
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "anything": 1}
    assert validator.unknown_fields(obj) == []


@pytest.mark.parametrize("base, path, value, reason, field", CASES,
                         ids=[f"{c[0].__name__}:{c[1]}={str(c[2])[:20]}" for c in CASES])
def test_a_remembered_valid_body_still_gets_its_metadata_and_update_checked(base, path, value, reason, field):
    """After a valid object, objects sharing its body take the metadata-only path: they
    must get exactly the causes a fresh validator finds, strict or not, create or update."""
    warmed = Validator()
    assert warmed.validate(base(), strict=True) == []
    broken = base()
    set_path(broken, path, value)
    for strict in (True, False):
        for old in (None, base()):
            assert warmed.validate(copy.deepcopy(broken), old, strict) == \
                Validator().validate(copy.deepcopy(broken), old, strict)


def test_metadata_problems_are_found_on_a_remembered_body():
    warmed = Validator()
    assert warmed.validate(pod(), strict=True) == []
    renamed = pod()
    renamed["metadata"]["name"] = "Not_A_Name"
    renamed["metadata"]["labels"] = {"app": 5}
    renamed["metadata"]["surprise"] = True
    fields = [(c["reason"], c["field"]) for c in warmed.validate(renamed, strict=True)]
    assert ("FieldValueTypeInvalid", "metadata.labels.app") in fields
    assert ("FieldValueInvalid", "metadata.surprise") in fields
    renamed["metadata"]["labels"] = {"app": "web"}
    fields = [(c["reason"], c["field"]) for c in warmed.validate(renamed, strict=True)]
    assert ("FieldValueInvalid", "metadata.name") in fields


@pytest.mark.parametrize("status", [
    {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    {"phase": 5},
    {"conditions": "ready"},
    {"bogus": True},
    {"containerStatuses": [{"name": "web", "ready": "yes", "restartCount": 0, "image": "x", "imageID": ""}]},
])
def test_status_writes_on_a_remembered_body_are_checked_like_fresh_ones(status):
    warmed = Validator()
    assert warmed.validate(pod(), strict=True) == []
    written = pod()
    written["status"] = status
    for strict in (True, False):
        for old in (None, pod()):
            assert warmed.validate(copy.deepcopy(written), old, strict) == \
                Validator().validate(copy.deepcopy(written), old, strict)


def test_kinds_without_a_schema_leave_no_compiled_checks_behind():
    """A client sending made-up kinds must not grow the validator's tables."""
    fresh = Validator()
    for i in range(50):
        obj = {"apiVersion": "example.com/v1", "kind": f"Made{i}", "metadata": {"name": "x"}, "spec": {}}
        assert fresh.validate(obj, strict=True) == []
        assert fresh.validate(obj, strict=True) == []   # the remembered body's metadata-only path
    assert fresh.compiled_check_count() == 0


@pytest.mark.parametrize("kind", ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"])
def test_rbac_names_are_path_segments_as_in_kubernetes(validator, kind):
    def named(name):
        obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name}}
        if kind.endswith("Binding"):
            obj["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
        return obj
    assert [c["field"] for c in validator.validate(named("system:controller:x"))] == []
    (cause,) = validator.validate(named("a/b"))
    assert (cause["field"], cause["message"]) == ("metadata.name", "Invalid value: \"a/b\": may not contain '/'")


def traced_growth(action) -> int:
    """Bytes the Python allocators hold after ``action()`` more than before it (tracemalloc)."""
    import gc
    import tracemalloc

    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_remembered_valid_bodies_hold_no_more_memory_than_their_budget(monkeypatch):
    """Issue 12: each remembered body was orjson's result, holding 4 KiB or more whatever
    its length, so 8 MiB of small ConfigMap bodies held ~500 MiB and the apiserver grew
    through the soak. Thousands of distinct valid ConfigMaps keep the validator within its
    budget (set to 256 KiB here)."""
    import pkube.api.validation as validation

    monkeypatch.setattr(validation, "VALID_BODIES_BYTES", 256 * 1024)
    warmed = Validator()

    def configmap(n: int) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}", "namespace": "default"},
                "data": {"n": str(n)}}

    assert warmed.validate(configmap(0), strict=True) == []     # the schema compiled once
    grown = traced_growth(lambda: [warmed.validate(configmap(n), strict=True) for n in range(1, 20_000)])
    assert grown < 2 * 256 * 1024
