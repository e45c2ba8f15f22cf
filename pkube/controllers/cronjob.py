"""CronJob controller (batch/v1): create Jobs on a cron schedule, as Kubernetes' cronjob
controller (v2) does.

Per CronJob key, ``reconcile``:
1. recomputes ``status.active`` from the Jobs it owns (job cache, controller-uid index; an
   entry for a Job the cache has not seen yet is checked with a GET), and
   ``lastSuccessfulTime`` from the finished ones; deletes finished Jobs beyond
   successfulJobsHistoryLimit / failedJobsHistoryLimit (oldest first, Background);
2. unless suspended or being deleted, finds the most recent unmet schedule time after
   lastScheduleTime (or creation), within startingDeadlineSeconds; over 100 missed times
   get a TooManyMissedTimes Warning (the most recent one still runs), a time past its
   deadline a MissSchedule Warning;
3. applies concurrencyPolicy (Forbid: skip while a Job runs; Replace: delete the running
   ones first) and creates the Job ``<cronjob>-<minutes since the epoch>`` from
   jobTemplate (AlreadyExists means it was made already);
4. writes status (guarded by the resourceVersion it read: a stale cache gets a conflict and
   a retry, never an older lastScheduleTime) and comes back at the next schedule time.

Time is ``ctx.clock.wall()``, so a test with a FakeClock fires schedules without waiting.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from typing import Optional

from pkube.api.cronschedule import Schedule, ScheduleError, parse_schedule
from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import CRONJOBS, JOBS
from pkube.client.timefmt import rfc3339
from pkube.controllers.base import Controller, ControllerContext, PermanentError, TemporaryError
from pkube.controllers.job_util import finished_condition
from pkube.controllers.podcontrol import CONTROLLER_INDEX, index_by_controller, owner_reference, parse_time

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100
NEXT_SCHEDULE_DELTA = 0.1


# ---------------------------------------------------------------- pure helpers

def unmet_schedule(cron_job: dict, schedule: Schedule, now: dt.datetime) -> tuple[Optional[dt.datetime], int]:
    """(the most recent schedule time not yet run, at or before ``now``, or None; how many
    times were missed since lastScheduleTime / creation, counted up to TOO_MANY_MISSED + 1).
    startingDeadlineSeconds bounds how far back times are looked for."""
    status, spec = cron_job.get("status") or {}, cron_job.get("spec") or {}
    earliest = (parse_time(status.get("lastScheduleTime"))
                or parse_time(cron_job["metadata"].get("creationTimestamp")) or now)
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
    missed = schedule.times_between(earliest, now, TOO_MANY_MISSED + 1)
    if not missed:
        return None, 0
    return schedule.latest_at_or_before(now), len(missed)


def job_name(cron_job: dict, scheduled: dt.datetime) -> str:
    """``<cronjob>-<minutes since the epoch>``: one name per schedule time (Kubernetes' getJobName)."""
    return f"{cron_job['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cron_job: dict, scheduled: dt.datetime, zone: dt.tzinfo) -> dict:
    """The Job a CronJob runs at ``scheduled``: its jobTemplate, owned by it, named by the time."""
    template = copy.deepcopy(cron_job["spec"].get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = scheduled.astimezone(zone).isoformat()
    meta = {"name": job_name(cron_job, scheduled), "namespace": cron_job["metadata"]["namespace"],
            "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
            "ownerReferences": [owner_reference(cron_job)]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template.get("spec") or {}}


def job_reference(job: dict) -> dict:
    meta = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "namespace": meta["namespace"],
            "uid": meta["uid"]}


def history_to_delete(jobs: list[dict], successful_limit: Optional[int], failed_limit: Optional[int]) -> list[dict]:
    """Finished Jobs beyond the history limits, oldest first (a None limit keeps all)."""
    doomed = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        if limit is None:
            continue
        done = [j for j in jobs if (finished_condition(j) or {}).get("type") == kind]
        done.sort(key=_started)
        doomed += done[:max(0, len(done) - int(limit))]
    return doomed


def _started(job: dict) -> str:
    return (job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp") or ""


def last_successful_time(current: Optional[str], jobs: list[dict]) -> Optional[str]:
    times = [t for t in [current] + [(j.get("status") or {}).get("completionTime") for j in jobs
                                     if (finished_condition(j) or {}).get("type") == "Complete"] if t]
    return max(times, key=lambda t: parse_time(t) or dt.datetime.min.replace(tzinfo=dt.timezone.utc)) \
        if times else None


# ---------------------------------------------------------------- the controller

class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        super().__init__(ctx, workers)
        self.cron_jobs = ctx.informers.informer(CRONJOBS)
        self.jobs = ctx.informers.informer(JOBS, {CONTROLLER_INDEX: index_by_controller})
        self.cron_jobs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.jobs.add_handlers(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def _job_changed(self, job: dict) -> None:
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "CronJob":
                self.queue.add(f"{job['metadata']['namespace']}/{ref['name']}")

    async def reconcile(self, key: str) -> None:
        cron_job = self.cron_jobs.store.get(key)
        if cron_job is None:
            return
        owned = self.jobs.store.by_index(CONTROLLER_INDEX, cron_job["metadata"]["uid"])
        status = copy.deepcopy(cron_job.get("status") or {})
        status["active"] = await self._active(cron_job, owned)
        status["lastSuccessfulTime"] = last_successful_time(status.get("lastSuccessfulTime"), owned)
        spec = cron_job["spec"]
        await self._delete_jobs(history_to_delete(owned, spec.get("successfulJobsHistoryLimit"),
                                                  spec.get("failedJobsHistoryLimit")))
        try:
            if not cron_job["metadata"].get("deletionTimestamp") and not spec.get("suspend"):
                await self._schedule(key, cron_job, status)
        finally:
            await self._write_status(cron_job, status)

    async def _active(self, cron_job: dict, owned: list[dict]) -> list[dict]:
        """References to the owned Jobs still running (cached ones, and listed ones the cache
        has not seen yet that still exist and run)."""
        running = [j for j in owned if finished_condition(j) is None]
        seen = {j["metadata"]["uid"] for j in owned}
        for ref in (cron_job.get("status") or {}).get("active") or []:
            if ref.get("uid") in seen:
                continue
            try:
                job = await self.client.get(JOBS, ref["name"], ref.get("namespace") or cron_job["metadata"]["namespace"])
            except NotFound:
                continue
            if job["metadata"].get("uid") == ref.get("uid") and finished_condition(job) is None:
                running.append(job)
        return [job_reference(j) for j in sorted(running, key=_started)]

    async def _schedule(self, key: str, cron_job: dict, status: dict) -> None:
        spec = cron_job["spec"]
        try:
            schedule = parse_schedule(spec.get("schedule", ""), spec.get("timeZone"))
        except ScheduleError as err:
            self.ctx.recorder.emit(cron_job, "Warning", "InvalidSchedule", f"invalid schedule: {err}")
            raise PermanentError(str(err)) from None
        now = self.clock.wall()
        self._come_back_at(key, schedule.next_after(now), now)
        scheduled, missed = unmet_schedule({**cron_job, "status": status}, schedule, now)
        if scheduled is None:
            return
        if missed > TOO_MANY_MISSED:
            self.ctx.recorder.emit(cron_job, "Warning", "TooManyMissedTimes",
                                   f"too many missed start times: {missed}. Set or decrease "
                                   ".spec.startingDeadlineSeconds or check clock skew")
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
            self.ctx.recorder.emit(cron_job, "Warning", "MissSchedule",
                                   f"Missed scheduled time to start a job: {rfc3339(scheduled)}")
            return
        name = job_name(cron_job, scheduled)
        if any(ref["name"] == name for ref in status["active"]):
            return
        await self._check_cache_current(cron_job)
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and status["active"]:
            self.ctx.recorder.emit(cron_job, "Normal", "JobAlreadyActive", "Not starting job because prior "
                                   "execution is running and concurrency policy is Forbid")
            return
        if policy == "Replace" and status["active"]:
            await self._delete_jobs(status["active"])
            status["active"] = []
        job = await self._create_job(cron_job, job_from_template(cron_job, scheduled, schedule.zone))
        if job is not None:
            status["active"].append(job_reference(job))
        status["lastScheduleTime"] = rfc3339(scheduled)

    async def _check_cache_current(self, cron_job: dict) -> None:
        """Before starting a Job, make sure the cached CronJob is the stored one: a cache that
        lags behind our own last status write would miss the Job started last time
        (TemporaryError: look again shortly)."""
        meta = cron_job["metadata"]
        stored = await self.client.get(CRONJOBS, meta["name"], meta["namespace"])
        if stored["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            raise TemporaryError("the CronJob cache is behind the stored object", delay=0.2)

    def _come_back_at(self, key: str, when: Optional[dt.datetime], now: dt.datetime) -> None:
        if when is not None:
            self.queue.add_after(key, (when - now).total_seconds() + NEXT_SCHEDULE_DELTA)

    async def _create_job(self, cron_job: dict, job: dict) -> Optional[dict]:
        """The Job created, or the existing one of that name if this CronJob controls it
        (None if someone else's)."""
        namespace = job["metadata"]["namespace"]
        try:
            created = await self.client.create(JOBS, job, namespace)
        except AlreadyExists:
            existing = await self.client.get(JOBS, job["metadata"]["name"], namespace)
            refs = existing["metadata"].get("ownerReferences") or []
            mine = any(r.get("uid") == cron_job["metadata"]["uid"] and r.get("controller") for r in refs)
            return existing if mine and finished_condition(existing) is None else None
        except Exception as err:
            self.ctx.recorder.emit(cron_job, "Warning", "FailedCreate", f"Error creating job: {err}")
            raise
        self.ctx.recorder.emit(cron_job, "Normal", "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        return created

    async def _delete_jobs(self, jobs: list[dict]) -> None:
        """Delete Jobs (objects or references) with propagation Background; gone ones are fine."""
        async def delete(job: dict) -> None:
            meta = job.get("metadata") or job
            try:
                await self.client.delete(JOBS, meta["name"], meta["namespace"], propagation_policy="Background")
            except NotFound:
                pass
        await asyncio.gather(*(delete(j) for j in jobs))

    async def _write_status(self, cron_job: dict, status: dict) -> None:
        current = cron_job.get("status") or {}
        wanted = {k: v for k, v in status.items() if v not in (None, [])}
        if wanted == {k: v for k, v in current.items() if v not in (None, [])}:
            return
        patch = {**wanted, **{k: None for k in current if k not in wanted}}
        if not status.get("active"):
            patch["active"] = None
        meta = cron_job["metadata"]
        guarded = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch}
        await self.client.patch(CRONJOBS, meta["name"], guarded, meta["namespace"], subresource="status")


def new_controller(ctx: ControllerContext) -> CronJobController:
    return CronJobController(ctx)
