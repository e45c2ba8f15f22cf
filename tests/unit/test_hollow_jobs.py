"""Hollow nodes run a Job's pods to completion: which pods, and the Succeeded status they get."""

import datetime as dt

from pkube.cluster.hollow import pod_running_status, pod_succeeded_status, runs_to_completion

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def pod(restart_policy):
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": restart_policy, "containers": [{"name": "c", "image": "busybox"}]}}


def test_only_pods_that_are_not_restarted_on_success_complete():
    assert runs_to_completion(pod("Never")) and runs_to_completion(pod("OnFailure"))
    assert not runs_to_completion(pod("Always"))


def test_a_completed_pod_reports_exit_code_zero_and_is_no_longer_ready():
    running = pod("Never")
    running["status"] = pod_running_status(running, "127.30.0.1", "10.244.0.2", NOW)
    status = pod_succeeded_status(running, NOW + dt.timedelta(seconds=1))
    assert status["phase"] == "Succeeded"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert terminated["finishedAt"] == "2026-03-01T12:00:01Z"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
