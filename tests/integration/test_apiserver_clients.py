"""Real clients against the apiserver over HTTP: the official kubernetes client and lightkube."""

from __future__ import annotations

from tests.helpers.kubeconfig import lightkube_client

import threading

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException


@pytest.fixture
def core(apiserver):
    config = k8s.Configuration(host=apiserver.url)
    with k8s.ApiClient(config) as api_client:
        yield k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)


def pod(name: str, app: str) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels={"app": app}),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="busybox")]))


def test_kubernetes_client_create_get_list_watch_delete(core):
    v1, _ = core
    created = v1.create_namespaced_pod("default", pod("web-1", "web"))
    assert created.metadata.uid and created.spec.restart_policy == "Always"
    v1.create_namespaced_pod("default", pod("db-1", "db"))
    assert v1.read_namespaced_pod("web-1", "default").metadata.uid == created.metadata.uid
    listed = v1.list_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in listed.items] == ["web-1"]
    assert listed.metadata.resource_version

    seen = []
    watcher = k8s_watch.Watch()
    done = threading.Event()

    def consume():
        for event in watcher.stream(v1.list_namespaced_pod, "default", label_selector="app=web",
                                    resource_version=listed.metadata.resource_version, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watcher.stop()
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    v1.create_namespaced_pod("default", pod("web-2", "web"))
    v1.delete_namespaced_pod("web-2", "default")
    assert done.wait(15)
    assert seen == [("ADDED", "web-2"), ("DELETED", "web-2")]
    v1.delete_namespaced_pod("web-1", "default")
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_pod("web-1", "default")
    assert err.value.status == 404


def test_kubernetes_client_errors_and_discovery(core, apiserver):
    v1, apps = core
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod("nowhere", pod("x", "x"))
    assert err.value.status == 404
    dep = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="d"),
        spec=k8s.V1DeploymentSpec(selector=k8s.V1LabelSelector(match_labels={"app": "d"}),
                                  template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels={"app": "d"}),
                                                                 spec=pod("x", "d").spec)))
    created = apps.create_namespaced_deployment("default", dep)
    assert created.spec.strategy.type == "RollingUpdate"
    scaled = apps.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4
    versions = k8s.VersionApi(v1.api_client).get_code()
    assert versions.git_version.startswith("v1.32")


def test_lightkube_round_trip(apiserver):
    from lightkube.resources.core_v1 import ConfigMap
    from lightkube.models.meta_v1 import ObjectMeta

    client = lightkube_client(apiserver.url)
    client.create(ConfigMap(metadata=ObjectMeta(name="lk", labels={"a": "b"}), data={"k": "v"}))
    assert client.get(ConfigMap, "lk").data == {"k": "v"}
    assert [c.metadata.name for c in client.list(ConfigMap, labels={"a": "b"})] == ["lk"]
    client.delete(ConfigMap, "lk")
    assert list(client.list(ConfigMap)) == []
