"""Issue 3: the official kubernetes client and lightkube list and watch pods, and resume a
watch from a resourceVersion after the server closes it (timeoutSeconds)."""

from __future__ import annotations

from tests.helpers.kubeconfig import lightkube_client

import threading
import time

import httpx
import pytest


def make_pod(url: str, name: str) -> str:
    """Create a pod through plain HTTP; return its resourceVersion."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "resume"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    resp = httpx.post(f"{url}/api/v1/namespaces/default/pods", json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["metadata"]["resourceVersion"]


def test_kubernetes_client_resumes_a_closed_watch(apiserver):
    from kubernetes import client as k8s, watch as k8s_watch

    make_pod(apiserver.url, "before")
    with k8s.ApiClient(k8s.Configuration(host=apiserver.url)) as api_client:
        core = k8s.CoreV1Api(api_client)
        listed = core.list_namespaced_pod("default", label_selector="app=resume")
        assert [p.metadata.name for p in listed.items] == ["before"]
        rv = listed.metadata.resource_version
        first = make_pod(apiserver.url, "during-1")
        started = time.monotonic()
        seen = [(e["type"], e["object"].metadata.name) for e in
                k8s_watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=resume",
                                         resource_version=rv, timeout_seconds=1)]
        assert seen == [("ADDED", "during-1")]          # the server closed the stream after 1 s
        assert time.monotonic() - started < 30
        make_pod(apiserver.url, "after-close")
        resumed = [(e["type"], e["object"].metadata.name) for e in
                   k8s_watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=resume",
                                            resource_version=first, timeout_seconds=1)]
        assert resumed == [("ADDED", "after-close")]    # nothing missed, nothing repeated


def test_lightkube_lists_and_resumes_a_closed_watch(apiserver):
    from lightkube.resources.core_v1 import Pod

    client = lightkube_client(apiserver.url)
    make_pod(apiserver.url, "lk-before")
    assert [p.metadata.name for p in client.list(Pod, labels={"app": "resume"})] == ["lk-before"]
    rv = make_pod(apiserver.url, "lk-1")
    make_pod(apiserver.url, "lk-2")
    # The server ends each watch after 1 s; lightkube re-opens it from the last
    # resourceVersion it saw. lk-3 is created after the first stream has closed.
    threading.Timer(2.5, make_pod, (apiserver.url, "lk-3")).start()
    seen = []
    for op, pod in client.watch(Pod, labels={"app": "resume"}, resource_version=rv, server_timeout=1):
        seen.append((op, pod.metadata.name))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "lk-2"), ("ADDED", "lk-3")]
