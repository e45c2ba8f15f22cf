"""A pod status write through the real apiserver (on real etcd) that would make a finished
container of a pod that does not restart it look running again gets Kubernetes' 422, and
the stored status stays the finished one: a late kubelet write cannot undo a Succeeded."""

from __future__ import annotations

import pytest

from pkube.client.errors import ApiError
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import PODS
from pkube.client.rest import ApiClient

RUNNING = {"phase": "Running", "containerStatuses": [
    {"name": "c", "image": "busybox", "imageID": "", "ready": True, "restartCount": 0,
     "state": {"running": {"startedAt": "2026-12-06T04:00:00Z"}}}]}
SUCCEEDED = {"phase": "Succeeded", "containerStatuses": [
    {"name": "c", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}


def one_shot_pod(policy: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"once-{policy.lower()}"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}}


def test_a_finished_never_restarted_pod_cannot_be_written_running_again(apiserver):
    with ApiClient(ClientConfig(apiserver.url)) as api:
        name = api.create(PODS, one_shot_pod("Never"), "default")["metadata"]["name"]
        api.patch(PODS, name, {"status": RUNNING}, "default", subresource="status")
        api.patch(PODS, name, {"status": SUCCEEDED}, "default", subresource="status")
        with pytest.raises(ApiError) as refused:
            api.patch(PODS, name, {"status": RUNNING}, "default", subresource="status")
        assert refused.value.code == 422
        assert "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state" \
            in str(refused.value)
        assert api.get(PODS, name, "default")["status"]["phase"] == "Succeeded"


def test_a_restarted_container_of_an_always_pod_may_run_again(apiserver):
    with ApiClient(ClientConfig(apiserver.url)) as api:
        name = api.create(PODS, one_shot_pod("Always"), "default")["metadata"]["name"]
        api.patch(PODS, name, {"status": SUCCEEDED}, "default", subresource="status")
        api.patch(PODS, name, {"status": RUNNING}, "default", subresource="status")
        assert api.get(PODS, name, "default")["status"]["phase"] == "Running"
