"""The official `kubernetes` Python client, unchanged, against `pkube up`."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def core_v1(cluster):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


def _pod(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}


def test_create_get_list_watch_delete_pods(core_v1):
    from kubernetes import watch
    from kubernetes.client.rest import ApiException

    created = core_v1.create_namespaced_pod("default", _pod("py-a", {"app": "py", "tier": "a"}))
    core_v1.create_namespaced_pod("default", _pod("py-b", {"app": "other"}))
    try:
        assert created.metadata.uid
        got = core_v1.read_namespaced_pod("py-a", "default")
        assert got.spec.containers[0].image == "busybox"
        assert got.spec.restart_policy == "Always"
        listed = core_v1.list_namespaced_pod("default", label_selector="app=py")
        assert [p.metadata.name for p in listed.items] == ["py-a"]

        seen = []
        w = watch.Watch()
        rv = listed.metadata.resource_version
        patcher = threading.Timer(0.5, lambda: core_v1.patch_namespaced_pod(
            "py-a", "default", {"metadata": {"labels": {"seen": "yes"}}}))
        patcher.start()
        for event in w.stream(core_v1.list_namespaced_pod, "default", label_selector="app=py",
                              resource_version=rv, timeout_seconds=10):
            # the scheduler may touch the pod first (no node fits it): wait for our change
            seen.append((event["type"], event["object"].metadata.name))
            if (event["object"].metadata.labels or {}).get("seen") == "yes":
                w.stop()
        patcher.join()
        assert seen and set(seen) == {("MODIFIED", "py-a")}

        core_v1.delete_namespaced_pod("py-a", "default")
        with pytest.raises(ApiException) as err:
            core_v1.read_namespaced_pod("py-a", "default")
        assert err.value.status == 404
    finally:
        for name in ("py-a", "py-b"):
            try:
                core_v1.delete_namespaced_pod(name, "default")
            except Exception:
                pass
