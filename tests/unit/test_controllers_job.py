"""The Job controller's pure logic: counts, back-off, indexes, failure policy, deadline, suspend."""

import datetime as dt

import pytest

from pkube.client.timefmt import rfc3339
from pkube.controllers.job_util import (INDEX_ANNOTATION, Backoff, completion_index, failure_policy_action,
                                  format_indexes, parse_indexes, plan_job, pod_for_job)

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def job(**spec):
    status = spec.pop("status", None) or {}
    base = {"parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "template": {"metadata": {"labels": {"job-name": "j"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    base.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "uid": "u1"},
            "spec": base, "status": status}


def pod(name, phase="Running", index=None, finished=None, exit_code=None, conditions=()):
    meta = {"name": name, "namespace": "default", "creationTimestamp": rfc3339(NOW - dt.timedelta(minutes=5))}
    if index is not None:
        meta["annotations"] = {INDEX_ANNOTATION: str(index)}
    status = {"phase": phase, "conditions": list(conditions)}
    if finished is not None or exit_code is not None:
        status["containerStatuses"] = [{"name": "c", "state": {"terminated": {
            "exitCode": exit_code or 0, "finishedAt": rfc3339(finished or NOW)}}}]
    return {"metadata": meta, "spec": {}, "status": status}


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    backoff = Backoff(10, 360)
    assert [backoff.delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 320, 360]
    assert Backoff(0.5, 4).delay(10) == 4


@pytest.mark.parametrize("text,indexes", [("", set()), ("0", {0}), ("1,3-5", {1, 3, 4, 5}),
                                          ("0-2,4,6-7", {0, 1, 2, 4, 6, 7})])
def test_completed_indexes_round_trip(text, indexes):
    assert parse_indexes(text) == indexes
    assert format_indexes(indexes) == text


def test_a_fresh_job_creates_parallelism_pods_and_gets_a_start_time():
    plan = plan_job(job(completions=5, parallelism=2), [], NOW)
    assert plan.create == [None, None] and not plan.delete
    assert plan.status["startTime"] == rfc3339(NOW) and plan.status["active"] == 0


def test_never_more_active_pods_than_completions_left():
    pods = [pod(f"s{i}", "Succeeded") for i in range(4)] + [pod("a", "Running")]
    plan = plan_job(job(completions=5, parallelism=3), pods, NOW)
    assert plan.create == [] and plan.delete == []
    assert plan.status["succeeded"] == 4 and plan.status["active"] == 1


def test_completes_with_completions_reached_and_a_completion_time():
    pods = [pod(f"s{i}", "Succeeded") for i in range(3)]
    plan = plan_job(job(completions=3, parallelism=2, status={"startTime": rfc3339(NOW)}), pods, NOW)
    assert plan.finished["type"] == "Complete" and plan.finished["reason"] == "CompletionsReached"
    assert plan.status["completionTime"] == rfc3339(NOW) and plan.status["succeeded"] == 3


def test_work_queue_job_completes_once_one_pod_succeeded_and_none_runs():
    running = plan_job(job(parallelism=2), [pod("s", "Succeeded"), pod("a")], NOW)
    assert running.finished is None and running.create == []
    done = plan_job(job(parallelism=2), [pod("s", "Succeeded")], NOW)
    assert done.finished["type"] == "Complete"


def test_backoff_limit_exceeded_fails_the_job_and_deletes_active_pods():
    pods = [pod("f1", "Failed", finished=NOW), pod("f2", "Failed", finished=NOW), pod("a")]
    plan = plan_job(job(completions=1, backoffLimit=1), pods, NOW)
    assert plan.finished["type"] == "Failed" and plan.finished["reason"] == "BackoffLimitExceeded"
    assert [p["metadata"]["name"] for p in plan.delete] == ["a"]
    assert plan.status["failed"] == 2


def test_replacements_wait_for_the_exponential_backoff_after_the_last_failure():
    failed = [pod("f1", "Failed", finished=NOW - dt.timedelta(seconds=30)),
              pod("f2", "Failed", finished=NOW - dt.timedelta(seconds=5))]
    plan = plan_job(job(completions=1), failed, NOW, Backoff(10, 360))
    assert plan.create == [] and plan.requeue_after == pytest.approx(15)    # 20 s after the second
    later = plan_job(job(completions=1), failed, NOW + dt.timedelta(seconds=16), Backoff(10, 360))
    assert later.create == [None]


def test_a_success_resets_the_consecutive_failures():
    pods = [pod("f1", "Failed", finished=NOW - dt.timedelta(seconds=60)),
            pod("s", "Succeeded", finished=NOW - dt.timedelta(seconds=50)),
            pod("f2", "Failed", finished=NOW - dt.timedelta(seconds=4))]
    plan = plan_job(job(completions=3), pods, NOW, Backoff(10, 360))
    assert plan.requeue_after == pytest.approx(6)                              # one failure: 10 s


def test_on_failure_restarts_count_toward_the_backoff_limit():
    spec_job = job(completions=1, backoffLimit=2)
    spec_job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    restarting = pod("a")
    restarting["status"]["containerStatuses"] = [{"name": "c", "restartCount": 3}]
    assert plan_job(spec_job, [restarting], NOW).finished["reason"] == "BackoffLimitExceeded"


def test_active_deadline_fails_the_job_with_deadline_exceeded():
    started = {"startTime": rfc3339(NOW - dt.timedelta(seconds=100))}
    plan = plan_job(job(completions=1, activeDeadlineSeconds=60, status=started), [pod("a")], NOW)
    assert plan.finished["reason"] == "DeadlineExceeded" and len(plan.delete) == 1
    early = plan_job(job(completions=1, activeDeadlineSeconds=160, status=started), [pod("a")], NOW)
    assert early.finished is None and early.requeue_after == pytest.approx(60)


def test_suspend_deletes_active_pods_and_resume_starts_again():
    plan = plan_job(job(completions=2, suspend=True, status={"startTime": rfc3339(NOW)}), [pod("a")], NOW)
    assert len(plan.delete) == 1 and "startTime" not in plan.status
    assert plan.status["conditions"][0]["reason"] == "JobSuspended"
    resumed = plan_job(job(completions=2, status=plan.status), [], NOW)
    assert resumed.create == [None] and resumed.status["startTime"] == rfc3339(NOW)
    suspended = resumed.status["conditions"][0]
    assert suspended["status"] == "False" and suspended["reason"] == "JobResumed"


def test_indexed_job_runs_each_missing_index_once_and_remembers_completed_ones():
    spec = dict(completions=5, parallelism=3, completionMode="Indexed")
    pods = [pod("p0", "Succeeded", index=0), pod("p1", index=1), pod("p1b", index=1), pod("bad", index=9)]
    plan = plan_job(job(**spec, status={"completedIndexes": "3"}), pods, NOW)
    assert plan.create == [2, 4]
    assert sorted(p["metadata"]["name"] for p in plan.delete) in (["bad", "p1"], ["bad", "p1b"])
    assert plan.status["completedIndexes"] == "0,3" and plan.status["succeeded"] == 2


def test_indexed_job_completes_when_every_index_succeeded():
    pods = [pod(f"p{i}", "Succeeded", index=i) for i in range(3)]
    plan = plan_job(job(completions=3, parallelism=3, completionMode="Indexed"), pods, NOW)
    assert plan.finished["type"] == "Complete" and plan.status["completedIndexes"] == "0-2"


def test_indexed_pods_carry_index_annotation_env_and_hostname():
    created = pod_for_job(job(completions=3, completionMode="Indexed"), 2)
    assert created["metadata"]["generateName"] == "j-2-"
    assert completion_index(created) == 2
    assert created["spec"]["hostname"] == "j-2"
    env = created["spec"]["containers"][0]["env"]
    assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}]
    assert created["metadata"]["ownerReferences"][0]["kind"] == "Job"


POLICY = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
]}


def test_failure_policy_rules_match_in_order():
    policy_job = job(podFailurePolicy=POLICY)
    assert failure_policy_action(policy_job, pod("x", "Failed", exit_code=42))[0] == "FailJob"
    disrupted = pod("y", "Failed", exit_code=1, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert failure_policy_action(policy_job, disrupted)[0] == "Ignore"
    assert failure_policy_action(policy_job, pod("z", "Failed", exit_code=7))[0] == "Count"
    assert failure_policy_action(policy_job, pod("w", "Failed", exit_code=1)) == (None, None)


def test_fail_job_rule_fails_at_once_and_ignored_failures_are_not_counted():
    policy_job = job(completions=1, backoffLimit=0, podFailurePolicy=POLICY)
    plan = plan_job(policy_job, [pod("x", "Failed", exit_code=42)], NOW)
    assert plan.finished["reason"] == "PodFailurePolicy"
    assert "exit code 42" in plan.finished["message"]
    disrupted = pod("y", "Failed", exit_code=1, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    plan = plan_job(policy_job, [disrupted], NOW)
    assert plan.finished is None and plan.status["failed"] == 0 and plan.create == [None]


def test_finished_job_only_cleans_up():
    done = job(completions=1, status={"conditions": [{"type": "Complete", "status": "True"}]})
    plan = plan_job(done, [pod("a")], NOW)
    assert plan.create == [] and len(plan.delete) == 1 and plan.finished is None
