"""A container's environment by Kubernetes' rules: precedence, envFrom, $(VAR) expansion,
valueFrom (Secret, ConfigMap, fields, resources) and the errors a user sees."""

from __future__ import annotations

import asyncio

import pytest

from pkube.kubelet.envvars import container_env, expand, lookup_in
from pkube.kubelet.errors import ConfigError
from tests.helpers.objectsource import DictSource


def make_pod(container: dict, **spec) -> dict:
    return {
        "metadata": {"name": "web-1", "namespace": "default", "uid": "1234-abcd",
                     "labels": {"app": "web", "tier": "front"}, "annotations": {"note": 'say "hi"'}},
        "spec": {"nodeName": "node-a", "serviceAccountName": "builder", "containers": [container], **spec},
        "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
                   "hostIP": "192.168.1.10"},
    }


def env_of(container: dict, source: DictSource | None = None, service_env=None, pod=None, **kw) -> dict:
    container = {"name": "app", "image": "busybox", **container}
    pod = pod or make_pod(container)
    return asyncio.run(container_env(pod, container, source or DictSource(), service_env, **kw))


def config_error(container: dict, source: DictSource | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        env_of(container, source)
    assert info.value.reason == "CreateContainerConfigError"
    return info.value


@pytest.mark.parametrize("text, expected", [
    ("$(A)", "a"),
    ("x$(A)y$(B)z", "xaybz"),
    ("$$(A)", "$(A)"),            # $$ escapes
    ("$$$(A)", "$a"),
    ("$(MISSING)", "$(MISSING)"),  # unknown refs stay as written
    ("$(A", "$(A"),               # unclosed
    ("$A", "$A"),
    ("cost: 5$", "cost: 5$"),     # a trailing $
    ("$()", "$()"),
    ("", ""),
])
def test_expansion_follows_kubernetes(text, expected):
    assert expand(text, lookup_in({"A": "a", "B": "b"})) == expected


def test_plain_values_and_a_later_entry_wins():
    env = env_of({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}, {"name": "A", "value": "2"}]})
    assert env == {"A": "2", "B": ""}


def test_precedence_service_then_env_from_then_env():
    source = DictSource()
    source.config_map("cfg", {"SVC_HOST": "from-cm", "COLOR": "blue", "SIZE": "L"})
    env = env_of({"envFrom": [{"configMapRef": {"name": "cfg"}}], "env": [{"name": "SIZE", "value": "XL"}]},
                 source, service_env={"SVC_HOST": "10.0.0.1", "SVC_PORT": "80"})
    assert env == {"SVC_HOST": "from-cm", "SVC_PORT": "80", "COLOR": "blue", "SIZE": "XL"}


def test_env_from_prefix_skips_invalid_names_and_a_later_source_wins():
    source = DictSource()
    source.config_map("cfg", {"ok": "1", "1bad": "x", "has space": "x", "dots.and-dashes": "y", "same": "cm"})
    source.secret("sec", {"same": "secret", "9": "nine"})
    env = env_of({"envFrom": [{"configMapRef": {"name": "cfg"}},
                              {"secretRef": {"name": "sec"}, "prefix": "S_"},
                              {"secretRef": {"name": "sec"}}]}, source)
    assert env == {"ok": "1", "dots.and-dashes": "y", "same": "secret", "S_same": "secret", "S_9": "nine"}


def test_env_from_missing_object_is_an_error_unless_optional():
    assert config_error({"envFrom": [{"configMapRef": {"name": "nope"}}]}).message == 'configmap "nope" not found'
    assert str(config_error({"envFrom": [{"secretRef": {"name": "db"}}]})) == 'secret "db" not found'
    assert env_of({"envFrom": [{"secretRef": {"name": "db", "optional": True}}]}) == {}


def test_expansion_sees_earlier_variables_service_env_and_env_from_only():
    source = DictSource()
    source.config_map("cfg", {"HOST": "db.local"})
    env = env_of({"envFrom": [{"configMapRef": {"name": "cfg"}}], "env": [
        {"name": "URL", "value": "pg://$(HOST):$(PORT)/$(NAME)"},
        {"name": "PORT", "value": "5432"},
        {"name": "AGAIN", "value": "$(PORT) $$(PORT) $(SVC)"},
    ]}, source, service_env={"SVC": "10.0.0.9"})
    assert env["URL"] == "pg://db.local:$(PORT)/$(NAME)"   # PORT is defined later: left as is
    assert env["AGAIN"] == "5432 $(PORT) 10.0.0.9"


def test_secret_and_config_map_keys():
    source = DictSource()
    source.secret("db", {"password": "s3cr3t\n"})
    source.config_map("cfg", {"level": "debug"})
    env = env_of({"env": [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
    ]}, source)
    assert env == {"PW": "s3cr3t\n", "LEVEL": "debug"}


def test_missing_keys_and_objects_have_kubernetes_messages():
    source = DictSource()
    source.secret("db", {"user": "admin"})
    source.config_map("cfg", {})
    missing_key = {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}
    assert str(config_error(missing_key, source)) == "couldn't find key password in Secret default/db"
    missing_cm_key = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}
    assert str(config_error(missing_cm_key, source)) == "couldn't find key k in ConfigMap default/cfg"
    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}
    assert str(config_error(missing, source)) == 'secret "gone" not found'


def test_optional_references_that_do_not_resolve_leave_the_variable_unset():
    source = DictSource()
    source.secret("db", {"user": "admin"})
    env = env_of({"env": [
        {"name": "KEPT", "value": "yes"},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": True}}},
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
    ]}, source, service_env={"PW": "service"})
    assert env == {"KEPT": "yes", "PW": "service"}


def test_each_object_is_read_once_per_call():
    source = DictSource()
    source.secret("db", {"a": "1", "b": "2"})
    env = env_of({"envFrom": [{"secretRef": {"name": "db"}}], "env": [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "b"}}},
    ]}, source)
    assert env == {"a": "1", "b": "2", "A": "1", "B": "2"} and source.reads == 1


@pytest.mark.parametrize("field, expected", [
    ("metadata.name", "web-1"),
    ("metadata.namespace", "default"),
    ("metadata.uid", "1234-abcd"),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['absent']", ""),
    ("metadata.annotations['note']", 'say "hi"'),
    ("metadata.labels", 'app="web"\ntier="front"'),
    ("metadata.annotations", 'note="say \\"hi\\""'),
    ("spec.nodeName", "node-a"),
    ("spec.serviceAccountName", "builder"),
    ("status.podIP", "10.1.0.5"),
    ("status.podIPs", "10.1.0.5,fd00::5"),
    ("status.hostIP", "192.168.1.10"),
])
def test_field_refs(field, expected):
    env = env_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": field}}}]})
    assert env == {"V": expected}


def test_addresses_the_kubelet_knows_before_the_status_does():
    container = {"name": "app", "image": "busybox", "env": [
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}
    pod = make_pod(container)
    pod["status"] = {}
    assert env_of(container, pod=pod) == {"IP": "", "HOST": ""}
    assert env_of(container, pod=pod, pod_ips=["10.2.0.7"], host_ips=["192.168.1.11"]) == \
        {"IP": "10.2.0.7", "HOST": "192.168.1.11"}


def test_unsupported_field_ref_is_a_config_error():
    error = config_error({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]})
    assert "unsupported fieldPath: spec.hostname" in str(error)


def resource_env(resources: dict, resource: str, divisor: str | None = None, **kw) -> str:
    ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    env = env_of({"resources": resources, "env": [{"name": "V", "valueFrom": {"resourceFieldRef": ref}}]}, **kw)
    return env["V"]


def test_resource_field_refs_round_up_by_the_divisor():
    resources = {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}}
    assert resource_env(resources, "limits.cpu") == "1"            # whole cores, rounded up
    assert resource_env(resources, "limits.cpu", "1m") == "500"
    assert resource_env(resources, "requests.cpu", "100m") == "3"
    assert resource_env(resources, "limits.memory") == str(128 * 2**20)
    assert resource_env(resources, "limits.memory", "1Mi") == "128"
    assert resource_env(resources, "requests.memory", "1M") == "68"   # 67.1 MB, rounded up


def test_unset_limits_fall_back_to_node_allocatable_and_unset_requests_are_zero():
    allocatable = {"cpu": "4", "memory": "8Gi"}
    assert resource_env({}, "limits.cpu", allocatable=allocatable) == "4"
    assert resource_env({}, "limits.memory", "1Gi", allocatable=allocatable) == "8"
    assert resource_env({}, "requests.cpu") == "0"


def test_resource_field_ref_of_another_container():
    sidecar = {"name": "sidecar", "image": "busybox", "resources": {"limits": {"memory": "32Mi"}}}
    container = {"name": "app", "image": "busybox", "env": [{"name": "V", "valueFrom": {"resourceFieldRef": {
        "containerName": "sidecar", "resource": "limits.memory", "divisor": "1Mi"}}}]}
    pod = make_pod(container)
    pod["spec"]["containers"].append(sidecar)
    assert env_of(container, pod=pod) == {"V": "32"}
    container["env"][0]["valueFrom"]["resourceFieldRef"]["containerName"] = "nope"
    with pytest.raises(ConfigError, match="container nope not found"):
        env_of(container, pod=pod)


def test_secret_values_are_not_in_the_error_messages():
    source = DictSource()
    source.secret("db", {"password": "hunter2"})
    error = config_error({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "other"}}}]},
                         source)
    assert "hunter2" not in str(error)
