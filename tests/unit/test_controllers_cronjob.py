"""Cron schedules (api.cronschedule) and the CronJob controller's pure helpers."""

import datetime as dt

import pytest

from pkube.api.cronschedule import ScheduleError, parse_schedule
from pkube.client.timefmt import rfc3339
from pkube.controllers.cronjob import (SCHEDULED_TIMESTAMP, TOO_MANY_MISSED, history_to_delete, job_from_template,
                                 job_name, last_successful_time, unmet_schedule)

UTC = dt.timezone.utc


def at(*parts):
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize("text,after,expected", [
    ("*/15 * * * *", at(2026, 3, 1, 10, 7), at(2026, 3, 1, 10, 15)),
    ("0 9 * * 1-5", at(2026, 3, 6, 10, 0), at(2026, 3, 9, 9, 0)),          # Friday -> Monday
    ("@hourly", at(2026, 3, 1, 10, 0), at(2026, 3, 1, 11, 0)),
    ("@daily", at(2026, 3, 1, 10, 0), at(2026, 3, 2, 0, 0)),
    ("@weekly", at(2026, 3, 2, 0, 0), at(2026, 3, 8, 0, 0)),               # Sundays
    ("@monthly", at(2026, 3, 1, 0, 0), at(2026, 4, 1, 0, 0)),
    ("@yearly", at(2026, 3, 1), at(2027, 1, 1)),
    ("0 0 1 jan,jul *", at(2026, 3, 1), at(2026, 7, 1)),
    ("30 2 13 * fri", at(2026, 3, 1), at(2026, 3, 6, 2, 30)),              # day-of-month OR day-of-week
])
def test_next_schedule_time(text, after, expected):
    assert parse_schedule(text).next_after(after) == expected


def test_time_zone_shifts_the_schedule():
    berlin = parse_schedule("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(at(2026, 1, 10, 0, 0)) == at(2026, 1, 10, 8, 0)   # CET = UTC+1
    assert berlin.next_after(at(2026, 7, 10, 0, 0)) == at(2026, 7, 10, 7, 0)   # CEST = UTC+2


def test_latest_at_or_before_includes_the_moment_itself():
    hourly = parse_schedule("@hourly")
    assert hourly.latest_at_or_before(at(2026, 3, 1, 10, 0)) == at(2026, 3, 1, 10, 0)
    assert hourly.latest_at_or_before(at(2026, 3, 1, 10, 59)) == at(2026, 3, 1, 10, 0)


@pytest.mark.parametrize("text,zone", [("61 * * * *", None), ("* * * *", None), ("@every 5m", None),
                                       ("TZ=UTC * * * * *", None), ("", None), ("* * * * *", "Mars/Base"),
                                       ("* * * * *", "../etc/passwd")])
def test_bad_schedules_and_zones_are_refused(text, zone):
    with pytest.raises(ScheduleError):
        parse_schedule(text, zone)


def cron_job(created, last=None, deadline=None):
    spec = {"schedule": "*/5 * * * *", "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                                      "spec": {"template": {"spec": {"containers": []}}}}}
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    status = {"lastScheduleTime": rfc3339(last)} if last else {}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "cj", "namespace": "default", "uid": "cj-uid", "creationTimestamp": rfc3339(created)},
            "spec": spec, "status": status}


def test_unmet_schedule_is_the_most_recent_time_after_the_last_one():
    schedule = parse_schedule("*/5 * * * *")
    created = at(2026, 3, 1, 10, 1)
    assert unmet_schedule(cron_job(created), schedule, at(2026, 3, 1, 10, 4)) == (None, 0)
    assert unmet_schedule(cron_job(created), schedule, at(2026, 3, 1, 10, 5)) == (at(2026, 3, 1, 10, 5), 1)
    assert unmet_schedule(cron_job(created), schedule, at(2026, 3, 1, 10, 17)) == (at(2026, 3, 1, 10, 15), 3)
    ran = cron_job(created, last=at(2026, 3, 1, 10, 15))
    assert unmet_schedule(ran, schedule, at(2026, 3, 1, 10, 19)) == (None, 0)


def test_missed_times_are_counted_up_to_the_too_many_rule_and_bounded_by_the_deadline():
    schedule = parse_schedule("* * * * *")
    created = at(2026, 3, 1, 0, 0)
    _, missed = unmet_schedule(cron_job(created), schedule, at(2026, 3, 2, 0, 0))
    assert missed == TOO_MANY_MISSED + 1
    latest, missed = unmet_schedule(cron_job(created, deadline=200), schedule, at(2026, 3, 2, 0, 0, 30))
    assert latest == at(2026, 3, 2, 0, 0) and missed == 3


def test_jobs_are_named_by_the_scheduled_minute_and_carry_the_template():
    scheduled = at(2026, 3, 1, 10, 5)
    job = job_from_template(cron_job(at(2026, 3, 1)), scheduled, UTC)
    assert job["metadata"]["name"] == job_name(cron_job(at(2026, 3, 1)), scheduled) == f"cj-{int(scheduled.timestamp()) // 60}"
    assert job["metadata"]["labels"] == {"team": "a"}
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-03-01T10:05:00+00:00"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "cj-uid"


def finished(name, kind, started, completed=None):
    status = {"startTime": started, "conditions": [{"type": kind, "status": "True"}]}
    if completed:
        status["completionTime"] = completed
    return {"metadata": {"name": name, "creationTimestamp": started}, "status": status}


def test_history_keeps_the_newest_successful_and_failed_jobs():
    jobs = [finished(f"ok{i}", "Complete", f"2026-03-01T10:0{i}:00Z") for i in range(5)]
    jobs += [finished(f"bad{i}", "Failed", f"2026-03-01T11:0{i}:00Z") for i in range(3)]
    jobs.append({"metadata": {"name": "running", "creationTimestamp": "2026-03-01T09:00:00Z"}, "status": {}})
    doomed = [j["metadata"]["name"] for j in history_to_delete(jobs, 3, 1)]
    assert doomed == ["ok0", "ok1", "bad0", "bad1"]
    assert history_to_delete(jobs, None, None) == []


def test_last_successful_time_is_the_latest_completion():
    jobs = [finished("a", "Complete", "2026-03-01T10:00:00Z", "2026-03-01T10:01:00Z"),
            finished("b", "Complete", "2026-03-01T10:05:00Z", "2026-03-01T10:06:00Z"),
            finished("c", "Failed", "2026-03-01T10:07:00Z")]
    assert last_successful_time(None, jobs) == "2026-03-01T10:06:00Z"
    assert last_successful_time("2026-03-01T11:00:00Z", jobs) == "2026-03-01T11:00:00Z"
    assert last_successful_time(None, []) is None
