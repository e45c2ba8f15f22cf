"""core/v1 LimitRange: validation with kube-apiserver's field paths and messages, its defaults,
the `kubectl get` row, and the LimitRanger admission plugin's defaulting and refusals
(pkube/api/validation_limitrange.py, pkube/apiserver/admission_limitranger.py)."""

import datetime as dt

import pytest

from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator
from pkube.apiserver.admission import CREATE, UPDATE, AdmissionRequest
from pkube.apiserver.admission_limitranger import ANNOTATION, LimitRanger
from pkube.apiserver.errors import ApiError
from pkube.apiserver.tables import cells_for, columns_for

CREATED = "2025-12-31T23:59:00Z"
ITEM = "spec.limits[0]"


@pytest.fixture(scope="module")
def validator():
    return Validator()


def limit_range(*items, name="limits", namespace="default"):
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name, "namespace": namespace},
            "spec": {"limits": list(items)}}


def messages(found):
    return {c["field"]: c["message"] for c in found}


def test_a_valid_limit_range_passes(validator):
    assert validator.validate(limit_range(
        {"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "2", "memory": "1Gi"},
         "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "200m"}, "maxLimitRequestRatio": {"cpu": "4"}},
        {"type": "Pod", "max": {"cpu": "4"}},
        {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}})) == []


@pytest.mark.parametrize("item, expected", [
    ({"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
     {f"{ITEM}.min[cpu]": 'Invalid value: "2": min value 2 is greater than max value 1',
      f"{ITEM}.defaultRequest[cpu]": 'Invalid value: "1": min value 2 is greater than default request value 1',
      f"{ITEM}.default[cpu]": 'Invalid value: "2": min value 2 is greater than default value 1'}),
    ({"type": "Container", "min": {"memory": "1Gi"}, "defaultRequest": {"memory": "512Mi"}, "default": {"memory": "2Gi"}},
     {f"{ITEM}.defaultRequest[memory]": 'Invalid value: "512Mi": min value 1Gi is greater than default request '
                                        'value 512Mi'}),
    ({"type": "Container", "defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}},
     {f"{ITEM}.defaultRequest[cpu]": 'Invalid value: "2": default request value 2 is greater than default limit '
                                     'value 1'}),
    ({"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "1"}},
     {f"{ITEM}.default[cpu]": 'Invalid value: "1": default value 2 is greater than max value 1',
      f"{ITEM}.defaultRequest[cpu]": 'Invalid value: "2": default request value 2 is greater than max value 1'}),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}},
     {f"{ITEM}.maxLimitRequestRatio[cpu]": 'Invalid value: "500m": ratio 500m is less than 1'}),
    ({"type": "Container", "min": {"cpu": "1"}, "max": {"cpu": "2"}, "maxLimitRequestRatio": {"cpu": "3"}},
     {f"{ITEM}.maxLimitRequestRatio[cpu]": 'Invalid value: "3": ratio 3 is greater than max/min = 2.000000'}),
    ({"type": "Pod", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}},
     {f"{ITEM}.default": "Forbidden: may not be specified when `type` is 'Pod'",
      f"{ITEM}.defaultRequest": "Forbidden: may not be specified when `type` is 'Pod'"}),
    ({"type": "Node", "max": {"cpu": "1"}},
     {f"{ITEM}.type": 'Invalid value: "Node": must be a standard limit type or fully qualified'}),
    ({"type": "PersistentVolumeClaim", "max": {"cpu": "1"}},
     {f"{ITEM}.limits": "Required value: either minimum or maximum storage value is required, but neither was "
                        "provided"}),
    ({"type": "Container", "max": {"gpu": "1"}},
     {f"{ITEM}.max[gpu]": 'Invalid value: "gpu": must be a standard resource for containers',
      f"{ITEM}.default[gpu]": 'Invalid value: "gpu": must be a standard resource for containers',
      f"{ITEM}.defaultRequest[gpu]": 'Invalid value: "gpu": must be a standard resource for containers'}),
])
def test_an_invalid_item_is_refused_with_upstreams_field_and_message(validator, item, expected):
    obj = limit_range(item)
    apply_defaults(obj)                    # as the apiserver does before validation (max → default ...)
    assert messages(validator.validate(obj)) == expected


def test_a_type_twice_is_a_duplicate(validator):
    found = validator.validate(limit_range({"type": "Pod", "max": {"cpu": "1"}}, {"type": "Pod", "max": {"cpu": "2"}}))
    assert messages(found) == {"spec.limits[1].type": 'Duplicate value: "Pod"'}


def test_container_items_default_limit_to_max_and_request_to_limit_then_min():
    obj = limit_range({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}},
                      {"type": "Pod", "max": {"cpu": "4"}})
    apply_defaults(obj)
    assert obj["spec"]["limits"] == [
        {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"},
         "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "10Mi"}},
        {"type": "Pod", "max": {"cpu": "4"}}]


def test_kubectl_get_limits_prints_name_and_created_at():
    assert [c.name for c in columns_for("limitranges")] == ["Name", "Created At"]
    obj = limit_range()
    obj["metadata"]["creationTimestamp"] = CREATED
    assert cells_for("limitranges", obj, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) == ["limits", CREATED]


# ---- the LimitRanger admission plugin

DEFAULTS = {"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"}, "max": {"cpu": "500m"}, "min": {"memory": "10Mi"}}


def plugin_with(*ranges):
    plugin = LimitRanger(store=None)
    plugin._absorb(list(ranges))
    return plugin


def request(obj, kind="Pod", operation=CREATE, namespace="default", old=None):
    info = type("Info", (), {"builtin_kind": kind, "plural": kind.lower() + "s"})()
    target = type("Target", (), {"info": info, "subresource": None, "namespace": namespace})()
    return AdmissionRequest(operation, target, obj, old, None)


def pod(*containers, init=(), name="x"):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": list(containers), "initContainers": list(init)}}


def container(name="app", **resources):
    return {"name": name, "image": "busybox", **({"resources": resources} if resources else {})}


def admitted(plugin, obj, **options):
    plugin.mutate(request(obj, **options))
    plugin.validate(request(obj, **options))
    return obj


def refusal(plugin, obj, **options) -> str:
    with pytest.raises(ApiError) as refused:
        admitted(plugin, obj, **options)
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    return refused.value.message


def test_a_pod_without_resources_gets_the_container_defaults_and_the_annotation():
    made = admitted(plugin_with(limit_range(DEFAULTS)), pod(container(), init=[container("setup")]))
    for each in made["spec"]["containers"] + made["spec"]["initContainers"]:
        assert each["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                     "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert made["metadata"]["annotations"][ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; "
        "cpu, memory request for init container setup; cpu, memory limit for init container setup")


def test_what_a_container_sets_is_kept_and_a_limit_is_its_own_request():
    made = admitted(plugin_with(limit_range(DEFAULTS)), pod(container(limits={"cpu": "200m"})))
    assert made["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "200m", "memory": "128Mi"},
                                                          "requests": {"cpu": "200m", "memory": "64Mi"}}
    assert made["metadata"]["annotations"][ANNOTATION] == (
        "LimitRanger plugin set: memory request for container app; memory limit for container app")


def test_another_namespaces_limit_range_and_updates_are_left_alone():
    plugin = plugin_with(limit_range(DEFAULTS, namespace="other"))
    assert "resources" not in admitted(plugin, pod(container()))["spec"]["containers"][0]
    plugin = plugin_with(limit_range(DEFAULTS))
    assert "resources" not in admitted(plugin, pod(container()), operation=UPDATE)["spec"]["containers"][0]


def test_a_container_over_the_max_is_forbidden_with_upstreams_message():
    message = refusal(plugin_with(limit_range(DEFAULTS)), pod(container(limits={"cpu": "1"})))
    assert message == 'pods "x" is forbidden: maximum cpu usage per Container is 500m, but limit is 1'


def test_several_violations_are_listed_in_brackets():
    message = refusal(plugin_with(limit_range(DEFAULTS)),
                      pod(container(limits={"cpu": "1"}, requests={"cpu": "1", "memory": "5Mi"})))
    assert message == ('pods "x" is forbidden: [minimum memory usage per Container is 10Mi, but request is 5Mi, '
                       'maximum cpu usage per Container is 500m, but limit is 1]')


@pytest.mark.parametrize("item, resources, expected", [
    ({"type": "Container", "max": {"memory": "1Gi"}}, {},
     "maximum memory usage per Container is 1Gi.  No limit is specified"),
    ({"type": "Container", "min": {"cpu": "100m"}}, {},
     "minimum cpu usage per Container is 100m.  No request is specified"),
    ({"type": "Container", "min": {"cpu": "100m"}}, {"requests": {"cpu": "200m"}, "limits": {"cpu": "50m"}},
     "minimum cpu usage per Container is 100m, but limit is 50m"),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}},
     "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"limits": {"cpu": "300m"}, "requests": {"cpu": "0"}},
     "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0"),
    ({"type": "Pod", "max": {"cpu": "1"}}, {"limits": {"cpu": "750m"}},
     "maximum cpu usage per Pod is 1, but limit is 1500m"),
])
def test_each_constraint_words_its_refusal_as_upstream(item, resources, expected):
    obj = pod(container("a", **resources), container("b", **resources))
    assert refusal(plugin_with(limit_range(item)), obj) == f'pods "x" is forbidden: {expected}'


def claim(size):
    return {"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def test_a_claim_is_held_to_the_storage_min_and_max_on_create_and_resize():
    plugin = plugin_with(limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"},
                                      "max": {"storage": "10Gi"}}))
    admitted(plugin, claim("5Gi"), kind="PersistentVolumeClaim")
    assert refusal(plugin, claim("20Gi"), kind="PersistentVolumeClaim") == (
        'persistentvolumeclaims "data" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, '
        'but request is 20Gi')
    assert refusal(plugin, claim("500Mi"), kind="PersistentVolumeClaim", operation=UPDATE, old=claim("1Gi")) == (
        'persistentvolumeclaims "data" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, '
        'but request is 500Mi')
