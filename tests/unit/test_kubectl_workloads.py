"""The objects pkubectl builds for run, create deployment, expose, set image and set env
(what kubectl 1.32 prints with -o yaml --dry-run=client for the same flags)."""

import pytest

from pkube.kubectl.errors import CliError
from pkube.kubectl.workloads import (container_name_for_image, deployment_for_create, env_listing, parse_env_changes,
                               parse_image_pairs, pod_for_run, pod_spec_patch, service_for_expose, set_env,
                               set_images)


def test_run_builds_kubectls_pod():
    pod = pod_for_run("web", "nginx", port=80, env=["A=1"], labels="x=y,z=w", restart="Never", args=["sh", "-c", "x"])
    assert pod == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"x": "y", "z": "w"}},
                   "spec": {"containers": [{"name": "web", "image": "nginx", "args": ["sh", "-c", "x"],
                                            "env": [{"name": "A", "value": "1"}],
                                            "ports": [{"containerPort": 80}], "resources": {}}],
                            "restartPolicy": "Never", "dnsPolicy": "ClusterFirst"},
                   "status": {}}
    plain = pod_for_run("web2", "nginx", command=True, args=["sleep", "10"])
    assert plain["metadata"]["labels"] == {"run": "web2"}
    assert plain["spec"]["containers"][0]["command"] == ["sleep", "10"]
    assert plain["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize("flags, message", [({"restart": "Sometimes"}, "invalid restart policy: Sometimes"),
                                            ({"env": ["NOVALUE"]}, "invalid env: NOVALUE"),
                                            ({"labels": "novalue"}, "invalid label spec: novalue")])
def test_run_refuses_bad_flags(flags, message):
    with pytest.raises(CliError, match=message):
        pod_for_run("web", "nginx", **flags)


def test_container_names_come_from_the_image():
    assert container_name_for_image("registry.local:5000/team/app:1.2@sha256:abc") == "app"
    assert container_name_for_image("busybox") == "busybox"
    assert container_name_for_image("my_app.v2:1", suffix="abcde") == "my-app-v2-abcde"


def test_create_deployment_builds_kubectls_deployment():
    deployment = deployment_for_create("web", ["nginx", "busybox:1"], replicas=2, port=80)
    assert deployment["metadata"] == {"name": "web", "labels": {"app": "web"}}
    spec = deployment["spec"]
    assert spec["replicas"] == 2 and spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"] == {"labels": {"app": "web"}}
    assert spec["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}},
        {"name": "busybox", "image": "busybox:1", "resources": {}}]
    single = deployment_for_create("job", ["busybox"], command=["sleep", "1d"])
    assert single["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "1d"]
    with pytest.raises(CliError, match="cannot specify multiple --image options and command"):
        deployment_for_create("web", ["a", "b"], command=["x"])
    with pytest.raises(CliError, match='"image" not set'):
        deployment_for_create("web", [])


DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
              "spec": {"selector": {"matchLabels": {"app": "web"}},
                       "template": {"spec": {"containers": [
                           {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}, {"containerPort": 53,
                                                                                           "protocol": "UDP"}]},
                           {"name": "side", "image": "s:1", "env": [{"name": "KEEP", "value": "1"}]}]}}}}


def test_expose_takes_selector_labels_and_ports_from_the_object():
    service = service_for_expose(DEPLOYMENT)
    assert service["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert service["spec"] == {"selector": {"app": "web"}, "ports": [
        {"name": "port-1", "port": 80, "protocol": "TCP", "targetPort": 80},
        {"name": "port-2", "port": 53, "protocol": "UDP", "targetPort": 53}]}
    named = service_for_expose(DEPLOYMENT, name="w2", port=8080, target_port="http", service_type="NodePort")
    assert named["metadata"]["name"] == "w2" and named["spec"]["type"] == "NodePort"
    assert named["spec"]["ports"] == [{"port": 8080, "protocol": "TCP", "targetPort": "http"}]


def test_expose_refuses_what_kubectl_refuses():
    with pytest.raises(CliError, match="the pod has no labels"):
        service_for_expose({"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}, port=80)
    with pytest.raises(CliError, match="couldn't find port"):
        service_for_expose({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": []}})
    with pytest.raises(CliError, match="couldn't convert expressions"):
        service_for_expose({"kind": "Deployment", "metadata": {"name": "d"},
                            "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}}, port=1)
    with pytest.raises(CliError, match="cannot expose a Node"):
        service_for_expose({"kind": "Node", "metadata": {"name": "n"}}, port=1)


def test_set_image_by_name_and_star_and_unknown_container():
    assert parse_image_pairs(["app=a:2"]) == {"app": "a:2"}
    updated = set_images(DEPLOYMENT, {"app": "a:2"})
    assert [c["image"] for c in updated["spec"]["template"]["spec"]["containers"]] == ["a:2", "s:1"]
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["image"] == "a:1"   # the input is not touched
    every = set_images(DEPLOYMENT, {"*": "x:9"})
    assert {c["image"] for c in every["spec"]["template"]["spec"]["containers"]} == {"x:9"}
    with pytest.raises(CliError, match='unable to find container named "ghost"'):
        set_images(DEPLOYMENT, {"ghost": "x"})
    with pytest.raises(CliError, match="invalid image spec"):
        parse_image_pairs(["app="])


def test_set_env_sets_in_place_removes_and_warns():
    settings, removals = parse_env_changes(["NEW=1", "KEEP=2", "GONE-"])
    assert (settings, removals) == ([{"name": "NEW", "value": "1"}, {"name": "KEEP", "value": "2"}], ["GONE"])
    updated = set_env(DEPLOYMENT, settings, [], container="side")
    side = updated["spec"]["template"]["spec"]["containers"][1]
    assert side["env"] == [{"name": "KEEP", "value": "2"}, {"name": "NEW", "value": "1"}]
    assert "env" not in updated["spec"]["template"]["spec"]["containers"][0]
    emptied = set_env(DEPLOYMENT, [], ["KEEP"])
    assert "env" not in emptied["spec"]["template"]["spec"]["containers"][1]
    warnings = []
    set_env(DEPLOYMENT, settings, [], container="ghost", warn=warnings.append)
    assert warnings == ['Warning: Deployment/web does not have any containers matching "ghost"']
    assert env_listing(DEPLOYMENT, "side") == "# Deployment web, container side\nKEEP=1\n"


def test_the_patch_carries_only_changed_containers_and_the_version_read():
    before = dict(DEPLOYMENT, metadata=dict(DEPLOYMENT["metadata"], resourceVersion="7"))
    assert pod_spec_patch(before, before) is None
    patch = pod_spec_patch(before, set_images(before, {"app": "a:2"}))
    assert patch["metadata"] == {"resourceVersion": "7"}
    assert [c["image"] for c in patch["spec"]["template"]["spec"]["containers"]] == ["a:2", "s:1"]
    pod = {"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "3"},
           "spec": {"containers": [{"name": "c", "image": "old"}]}}
    assert pod_spec_patch(pod, set_images(pod, {"c": "new"}))["spec"] == {"containers": [{"name": "c", "image": "new"}]}
