"""TTL-after-finished controller: delete finished Jobs ``ttlSecondsAfterFinished`` after they finish.

Per Job key, ``reconcile`` reads the Job from the cache; a Job that has a TTL and a Complete or
Failed condition expires at the condition's lastTransitionTime (its completionTime for a
Complete one) plus the TTL. An expired Job is deleted with propagationPolicy Background
(the garbage collector then deletes its pods), guarded by its uid so a new Job of the same
name is never hit; an unexpired one is looked at again when it expires. Time comes from the
injected clock (``ctx.clock.wall()``).
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pkube.client.errors import Conflict, NotFound
from pkube.client.resources import JOBS
from pkube.controllers.base import Controller, ControllerContext
from pkube.controllers.job_util import finished_condition
from pkube.controllers.podcontrol import parse_time


def finish_time(job: dict) -> Optional[dt.datetime]:
    """When the Job finished; None while it runs (or when no time is recorded)."""
    cond = finished_condition(job)
    if cond is None:
        return None
    if cond.get("type") == "Complete":
        done = parse_time((job.get("status") or {}).get("completionTime"))
        if done is not None:
            return done
    return parse_time(cond.get("lastTransitionTime"))


def seconds_until_expiry(job: dict, now: dt.datetime) -> Optional[float]:
    """Seconds until ``job`` may be deleted (<= 0: now); None when it has no TTL or runs."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = finish_time(job)
    if ttl is None or finished is None:
        return None
    return (finished + dt.timedelta(seconds=int(ttl)) - now).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttlafterfinished"

    def __init__(self, ctx: ControllerContext, workers: int = 2):
        super().__init__(ctx, workers)
        self.jobs = ctx.informers.informer(JOBS)
        self.jobs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))

    async def reconcile(self, key: str) -> None:
        job = self.jobs.store.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        left = seconds_until_expiry(job, self.clock.wall())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta["namespace"], propagation_policy="Background",
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        self.ctx.recorder.emit(job, "Normal", "Deleted", "Job deleted by the TTL-after-finished controller")


def new_controller(ctx: ControllerContext) -> TTLAfterFinishedController:
    return TTLAfterFinishedController(ctx)
