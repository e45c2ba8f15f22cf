"""Defaults and validation of Jobs, CronJobs and ReplicationControllers; their table rows."""

import copy
import datetime as dt

import pytest

from pkube.api import meta
from pkube.api.defaults import apply_defaults
from pkube.api.validation import Validator
from pkube.apiserver.tables import cells_for, columns_for

TEMPLATE = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture(scope="module")
def validator():
    return Validator()


def new_job(**spec):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
           "spec": {"template": {"spec": dict(TEMPLATE["spec"])}, **spec}}
    meta.stamp_new(job)
    return apply_defaults(job)


def fields(found):
    return [c["field"] for c in found]


def test_job_defaults_and_generated_selector(validator):
    job = new_job()
    uid = job["metadata"]["uid"]
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"]) == \
        (1, 1, 6, "NonIndexed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels == {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                      "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
    assert job["metadata"]["labels"] == labels
    assert validator.validate(job, strict=True) == []


def test_parallelism_alone_leaves_completions_unset():
    assert "completions" not in new_job(parallelism=3)["spec"]


@pytest.mark.parametrize("spec,field", [
    ({"completionMode": "Indexed", "completions": None, "parallelism": 2}, "spec.completions"),
    ({"backoffLimit": -1}, "spec.backoffLimit"),
    ({"completionMode": "Sometimes"}, "spec.completionMode"),
    ({"podFailurePolicy": {"rules": [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [1]}}]}},
     "spec.podFailurePolicy.rules[0].action"),
    ({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]}},
     "spec.podFailurePolicy.rules[0].onExitCodes.values"),
])
def test_bad_job_specs_name_the_field(validator, spec, field):
    assert field in fields(validator.validate(new_job(**spec), strict=True))


def test_job_pods_must_not_restart_always(validator):
    job = new_job()
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert fields(validator.validate(job, strict=True)) == ["spec.template.spec.restartPolicy"]


def test_a_foreign_controller_uid_in_the_selector_is_refused(validator):
    job = new_job(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "someone-else"}})
    assert "spec.template.metadata.labels" in fields(validator.validate(job, strict=True))


def cron_job(schedule, zone=None):
    spec = {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": dict(TEMPLATE["spec"])}}}}
    if zone:
        spec["timeZone"] = zone
    return apply_defaults({"apiVersion": "batch/v1", "kind": "CronJob",
                           "metadata": {"name": "tick", "namespace": "default"}, "spec": spec})


def test_cron_job_defaults_and_a_valid_schedule(validator):
    cj = cron_job("*/5 * * * *", "Europe/Berlin")
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"], cj["spec"]["successfulJobsHistoryLimit"],
            cj["spec"]["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert validator.validate(cj, strict=True) == []


@pytest.mark.parametrize("schedule,zone,field", [("61 * * * *", None, "spec.schedule"),
                                                 ("not a schedule", None, "spec.schedule"),
                                                 ("@daily", "Nowhere/City", "spec.timeZone")])
def test_bad_schedule_or_zone_names_the_field(validator, schedule, zone, field):
    assert fields(validator.validate(cron_job(schedule, zone), strict=True)) == [field]


def test_replication_controller_selector_defaults_to_the_template_labels(validator):
    rc = apply_defaults({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"},
                         "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    assert rc["spec"]["selector"] == {"app": "web"} and rc["metadata"]["labels"] == {"app": "web"}
    assert rc["spec"]["replicas"] == 1
    assert validator.validate(rc, strict=True) == []
    rc["spec"]["selector"] = {"app": "db"}
    assert fields(validator.validate(rc, strict=True)) == ["spec.template.metadata.labels"]


NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def test_job_rows_show_status_completions_and_duration():
    job = new_job(completions=5, parallelism=2)
    job["metadata"]["creationTimestamp"] = "2026-03-01T11:58:00Z"
    job["status"] = {"succeeded": 5, "startTime": "2026-03-01T11:58:00Z", "completionTime": "2026-03-01T11:58:40Z",
                     "conditions": [{"type": "Complete", "status": "True"}]}
    assert [c.name for c in columns_for("jobs")][:5] == ["Name", "Status", "Completions", "Duration", "Age"]
    assert cells_for("jobs", job, NOW)[:5] == ["pi", "Complete", "5/5", "40s", "2m"]
    job["status"] = {"succeeded": 1, "startTime": "2026-03-01T11:59:00Z"}
    job["spec"].pop("completions")
    assert cells_for("jobs", job, NOW)[1:4] == ["Running", "1/1 of 2", "60s"]


def test_cronjob_and_rc_rows():
    cj = cron_job("@hourly")
    cj["metadata"]["creationTimestamp"] = "2026-03-01T10:00:00Z"
    cj["status"] = {"active": [{"name": "x"}], "lastScheduleTime": "2026-03-01T11:00:00Z"}
    assert cells_for("cronjobs", cj, NOW)[:7] == ["tick", "@hourly", "<none>", False, 1, "60m", "120m"]
    rc = {"metadata": {"name": "r", "creationTimestamp": "2026-03-01T11:59:00Z"},
          "spec": {"replicas": 3, "selector": {"app": "web"}, "template": {"spec": {"containers": []}}},
          "status": {"replicas": 3, "readyReplicas": 2}}
    assert cells_for("replicationcontrollers", rc, NOW) == ["r", 3, 3, 2, "60s", "", "", "app=web"]


def test_job_updates_keep_the_selector_template_and_completions(validator):
    old = new_job(completions=3)
    old["status"] = {"startTime": "2026-03-01T11:00:00Z"}
    changed = apply_defaults(copy.deepcopy(old))
    changed["spec"]["parallelism"] = 2                                     # allowed
    assert validator.validate(changed, old=old, strict=True) == []
    changed["spec"]["completions"] = 4
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx"
    changed["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}}
    assert {"spec.completions", "spec.template", "spec.selector"} <= set(fields(
        validator.validate(changed, old=old, strict=True)))


def test_a_suspended_job_that_never_ran_may_change_its_template(validator):
    old = new_job(completions=1, suspend=True)
    changed = copy.deepcopy(old)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx"
    assert validator.validate(changed, old=old, strict=True) == []
