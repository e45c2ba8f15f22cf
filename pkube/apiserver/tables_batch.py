"""Table columns of Jobs, CronJobs and ReplicationControllers, as kubectl's printers show them
(pkg/printers/internalversion/printers.go). Registers itself in ``apiserver.tables.PRINTERS``
when imported (apiserver.tables imports it at its end)."""

from __future__ import annotations

import datetime

from pkube.apiserver.tables import (AGE, CONTAINERS, IMAGES, NAME, NONE, PRINTERS, SELECTOR, Column, _get,
                              _meta, _names_and_images, _template_containers, age_since,
                              format_label_selector, format_labels, human_duration, parse_time)

JOB_COLUMNS = (
    NAME,
    Column("Status", description="Status of the job."),
    Column("Completions", description="The completion status of the job."),
    Column("Duration", description="Time required to complete the job."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
CRONJOB_COLUMNS = (
    NAME,
    Column("Schedule", description="The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    Column("Timezone", description="The time zone name for the given schedule."),
    Column("Suspend", type="boolean", description="This flag tells the controller to suspend subsequent "
                                                  "executions, it does not apply to already started executions."),
    Column("Active", type="integer", description="A list of pointers to currently running jobs."),
    Column("Last Schedule", description="Information when was the last time the job was successfully scheduled."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)
RC_COLUMNS = (
    NAME,
    Column("Desired", type="integer", description="Replicas is the number of desired replicas."),
    Column("Current", type="integer", description="Replicas is the most recently observed number of replicas."),
    Column("Ready", type="integer", description="The number of ready replicas for this replication controller."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _has_condition(status: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or [])


def job_status(obj: dict) -> str:
    """kubectl's STATUS of a Job."""
    status = obj.get("status") or {}
    for kind in ("Complete", "Failed"):
        if _has_condition(status, kind):
            return kind
    if _meta(obj).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has_condition(status, kind):
            return kind
    return "Running"


def job_completions(obj: dict) -> str:
    succeeded = int((obj.get("status") or {}).get("succeeded") or 0)
    completions = _get(obj, "spec", "completions")
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = int(_get(obj, "spec", "parallelism", default=0))
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(obj: dict, now: datetime.datetime) -> str:
    status = obj.get("status") or {}
    started = parse_time(status.get("startTime"))
    if started is None:
        return ""
    finished = parse_time(status.get("completionTime")) or now
    return human_duration((finished - started).total_seconds())


def _job_cells(obj: dict, now: datetime.datetime) -> list:
    return [_meta(obj).get("name", ""), job_status(obj), job_completions(obj), job_duration(obj, now),
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj)),
            format_label_selector(_get(obj, "spec", "selector"))]


def _cronjob_cells(obj: dict, now: datetime.datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    job_spec = _get(obj, "spec", "jobTemplate", "spec", default={})
    last = status.get("lastScheduleTime")
    return [_meta(obj).get("name", ""), spec.get("schedule", ""), spec.get("timeZone") or NONE,
            bool(spec.get("suspend")), len(status.get("active") or []),
            age_since(last, now) if last else NONE,
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_get(job_spec, "template", "spec", "containers", default=[])),
            format_label_selector(job_spec.get("selector"))]


def _rc_cells(obj: dict, now: datetime.datetime) -> list:
    status = obj.get("status") or {}
    return [_meta(obj).get("name", ""), int(_get(obj, "spec", "replicas", default=1)),
            int(status.get("replicas", 0)), int(status.get("readyReplicas", 0)),
            age_since(_meta(obj).get("creationTimestamp"), now),
            *_names_and_images(_template_containers(obj)),
            format_labels(_get(obj, "spec", "selector"))]


PRINTERS["jobs"] = (JOB_COLUMNS, _job_cells)
PRINTERS["cronjobs"] = (CRONJOB_COLUMNS, _cronjob_cells)
PRINTERS["replicationcontrollers"] = (RC_COLUMNS, _rc_cells)
