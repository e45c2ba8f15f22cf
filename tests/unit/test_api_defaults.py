"""Defaults as the Kubernetes apiserver sets them (what `kubectl get -o yaml` shows after create)."""

import base64

import pytest

from pkube.api.defaults import apply_defaults, image_pull_policy


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_pod_defaults():
    spec = apply_defaults(pod())["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["serviceAccountName"] == "default"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "Always"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["resources"] == {}


def test_pod_defaults_keep_what_the_client_set():
    spec = apply_defaults(pod(restartPolicy="Never", terminationGracePeriodSeconds=0,
                              tolerations=[{"key": "node.kubernetes.io/unreachable",
                                            "operator": "Exists", "effect": "NoExecute",
                                            "tolerationSeconds": 5}]))["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 0
    assert [t["key"] for t in spec["tolerations"]] == [
        "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
    assert spec["tolerations"][0]["tolerationSeconds"] == 5


def test_tolerate_everything_gets_no_default_tolerations():
    spec = apply_defaults(pod(tolerations=[{"operator": "Exists"}]))["spec"]
    assert spec["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize("image, policy", [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"),
    ("localhost:5000/busybox:1.0", "IfNotPresent"),
    ("registry.k8s.io/pause@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy


def test_container_ports_probes_and_limits():
    obj = pod()
    obj["spec"]["containers"][0].update({
        "image": "nginx:1.25",
        "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
    })
    container = apply_defaults(obj)["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
        "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}


def test_host_network_ports_get_host_port():
    obj = pod(hostNetwork=True)
    obj["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    assert apply_defaults(obj)["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


def test_volumes():
    obj = pod(volumes=[{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}},
                       {"name": "c", "configMap": {"name": "cm", "defaultMode": 256}}])
    volumes = apply_defaults(obj)["spec"]["volumes"]
    assert volumes[0] == {"name": "a", "emptyDir": {}}
    assert volumes[1]["secret"]["defaultMode"] == 420
    assert volumes[2]["configMap"]["defaultMode"] == 256


def test_deployment_defaults():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                           "template": {"metadata": {"labels": {"a": "b"}},
                                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
    spec = apply_defaults(deployment)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    template_spec = spec["template"]["spec"]
    assert template_spec["restartPolicy"] == "Always"
    assert template_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "tolerations" not in template_spec  # admission adds them to pods only


def test_recreate_strategy_gets_no_rolling_update():
    deployment = {"kind": "Deployment", "spec": {"strategy": {"type": "Recreate"}}}
    assert apply_defaults(deployment)["spec"]["strategy"] == {"type": "Recreate"}


def test_replica_set_defaults():
    rs = apply_defaults({"kind": "ReplicaSet", "spec": {"template": {"spec": {"containers": []}}}})
    assert rs["spec"]["replicas"] == 1
    assert rs["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_service_defaults():
    service = {"kind": "Service", "spec": {"selector": {"app": "web"},
                                           "ports": [{"port": 80}, {"port": 53, "protocol": "UDP",
                                                                    "targetPort": "dns"}]}}
    spec = apply_defaults(service)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 53, "protocol": "UDP", "targetPort": "dns"}]
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "clusterIP" not in spec


def test_node_port_service_gets_external_traffic_policy():
    spec = apply_defaults({"kind": "Service", "spec": {"type": "NodePort", "ports": [{"port": 1}]}})["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert "nodePort" not in spec["ports"][0]


def test_secret_string_data_is_folded_into_data():
    secret = {"kind": "Secret", "data": {"a": base64.b64encode(b"old").decode()},
              "stringData": {"b": "hello", "a": "new"}}
    apply_defaults(secret)
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {"a": b"new", "b": b"hello"}


def test_namespace_defaults():
    namespace = apply_defaults({"kind": "Namespace", "metadata": {"name": "n"}})
    assert namespace["spec"] == {"finalizers": ["kubernetes"]}
    assert namespace["status"] == {"phase": "Active"}


def test_configmap_and_unknown_kinds_untouched():
    assert apply_defaults({"kind": "ConfigMap", "data": {"a": "b"}}) == {"kind": "ConfigMap", "data": {"a": "b"}}
    assert apply_defaults({"kind": "Lease"}) == {"kind": "Lease"}
    assert apply_defaults("junk") == "junk"


def test_defaults_are_idempotent():
    once = apply_defaults(pod())
    import copy
    assert apply_defaults(copy.deepcopy(once)) == once


@pytest.mark.parametrize("obj", [
    {"kind": "Pod", "spec": "nonsense"},
    {"kind": "Pod", "spec": {"containers": "x", "tolerations": 3}},
    {"kind": "Deployment", "spec": {"strategy": [], "template": 1}},
    {"kind": "Service", "spec": {"ports": [1, None]}},
    {"kind": "Secret", "stringData": ["a"]},
    {"kind": "Namespace", "spec": None},
])
def test_malformed_objects_do_not_raise(obj):
    apply_defaults(obj)
