"""Jobs with real containers on `pkube up`'s node, driven by the real kubectl: a Job of 5
completions with parallelism 2 completes (`kubectl wait --for=condition=complete`), each Indexed
pod sees its JOB_COMPLETION_INDEX, and a Job whose pods keep failing stops at its backoffLimit."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.test_kubelet_pods import apply, kubectl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")

FIVE = """\
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'echo "index $JOB_COMPLETION_INDEX"']
"""

DOOMED = """\
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'exit 3']
"""


def job(cluster, name: str) -> dict:
    return json.loads(kubectl(cluster, "get", "job", name, "-o", "json").stdout)


def job_pods(cluster, name: str) -> list[dict]:
    return json.loads(kubectl(cluster, "get", "pods", "-l", f"job-name={name}", "-o", "json").stdout)["items"]


RECENT_EVENTS = 40   # the Events a failed wait shows (the namespace's newest)


def wait_job(cluster, name: str, condition: str) -> subprocess.CompletedProcess:
    """`kubectl wait --for=condition=<condition> job/<name>` (150 s); when it fails, the assertion
    says what was stuck: the Job's status, its pods' phases, conditions and container
    statuses, the namespace's newest Events, and every pod of the node (leftovers of earlier
    tests, restarts of the static control plane): one kubectl call each."""
    done = kubectl(cluster, "wait", f"--for=condition={condition}", f"job/{name}", "--timeout=150s",
                   timeout=160, check=False)
    if done.returncode == 0:
        return done
    pods = "{range .items[*]}{.metadata.name} {.metadata.uid} {.metadata.deletionTimestamp} " \
           "{.spec.nodeName} {.status.phase} {.status.conditions} {.status.containerStatuses}{\"\\n\"}{end}"
    report = [
        kubectl(cluster, "get", "job", name, "-o", "jsonpath={.metadata.uid} {.status}", check=False),
        kubectl(cluster, "get", "pods", "-l", f"job-name={name}", "-o", f"jsonpath={pods}", check=False),
        kubectl(cluster, "get", "events", "--sort-by=.lastTimestamp", check=False),
        kubectl(cluster, "get", "pods", "-A", "-o", "wide", check=False),
    ]
    events = report[2].stdout.splitlines()
    report[2].stdout = "\n".join(events[:1] + events[1:][-RECENT_EVENTS:]) + "\n"
    raise AssertionError(f"kubectl wait {condition} job/{name}: {done.stderr}{done.stdout}\n" +
                         "\n".join(f"{r.args[3:]}:\n{r.stdout}{r.stderr}" for r in report))


def test_a_job_of_five_completions_with_parallelism_two_completes(node_cluster):
    apply(node_cluster, FIVE)
    try:
        done = wait_job(node_cluster, "five", "complete")
        assert done.stdout == "job.batch/five condition met\n"
        status = job(node_cluster, "five")["status"]
        assert status["succeeded"] == 5 and status["completedIndexes"] == "0-4"
        pods = job_pods(node_cluster, "five")
        assert len(pods) == 5 and {p["status"]["phase"] for p in pods} == {"Succeeded"}
        for pod in pods:
            index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            log = kubectl(node_cluster, "logs", pod["metadata"]["name"]).stdout
            assert log == f"index {index}\n"
        row = kubectl(node_cluster, "get", "job", "five", "--no-headers").stdout.split()
        assert row[:3] == ["five", "Complete", "5/5"], row
    finally:
        kubectl(node_cluster, "delete", "job", "five", "--wait=false", check=False)


def test_a_job_whose_pods_keep_failing_stops_at_its_backoff_limit(node_cluster):
    apply(node_cluster, DOOMED)
    try:
        wait_job(node_cluster, "doomed", "failed")
        failed = next(c for c in job(node_cluster, "doomed")["status"]["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "BackoffLimitExceeded"
        pods = job_pods(node_cluster, "doomed")
        assert len(pods) == 2 and {p["status"]["phase"] for p in pods} == {"Failed"}
        exit_codes = {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods}
        assert exit_codes == {3}
    finally:
        kubectl(node_cluster, "delete", "job", "doomed", "--wait=false", check=False)
