"""Job controller (batch/v1): run pods to completion, as Kubernetes' job controller does.

Per Job key, ``reconcile``:
1. takes the Job's pods from the pod cache's controller-uid index (pods it owns; orphans
   are not adopted: the selector Kubernetes generates holds the Job's uid, so only a
   manualSelector Job could have any);
2. asks ``controllers.job_util.plan_job`` what to do (pure: counts, back-off, deadline,
   podFailurePolicy, suspend, completion); while its expectations are unmet (the cache has
   not yet seen the pods it created) it only writes status;
3. deletes the pods the plan drops, creates the pods it asks for in slow-start batches
   (16, 32, ...; at most ``burst`` per pass), emits Events, and writes status when it changed;
4. comes back when a back-off or an activeDeadlineSeconds runs out.

The back-off base (10 s) and cap (6 min) come from ``ctx.options["job_backoff_base"]`` and
``["job_backoff_cap"]``, so tests can shorten them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from pkube.client.errors import NotFound
from pkube.client.resources import JOBS, PODS
from pkube.client.store import object_key
from pkube.controllers.base import Controller, ControllerContext, Expectations
from pkube.controllers.job_util import Backoff, JobPlan, finished_condition, plan_job, pod_for_job
from pkube.controllers.podcontrol import CONTROLLER_INDEX, controller_ref, index_by_controller, slow_start

log = logging.getLogger(__name__)

DEFAULT_BURST = 500
# Pods are created in slow-start batches from this size up (Kubernetes starts at 1): a Job
# replaces finished pods in bursts, and each batch is one more round trip before they run
# (bench/controllers.py: 1,000 completions took 8.2 s from 1, 5.2 s from 16).
SLOW_START_INITIAL = 16


class JobController(Controller):
    name = "job"

    def __init__(self, ctx: ControllerContext, workers: int = 5, burst: int = DEFAULT_BURST,
                 backoff: Optional[Backoff] = None):
        super().__init__(ctx, workers)
        self.burst = burst
        self.backoff = backoff or Backoff()
        self.expectations = Expectations(ctx.clock)
        self.job_informer = ctx.informers.informer(JOBS)
        self.pod_informer = ctx.informers.informer(PODS, {CONTROLLER_INDEX: index_by_controller})
        self.job_informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pod_informer.add_handlers(self._pod_added, lambda old, new: self._pod_changed(new),
                                       self._pod_deleted)

    # -- handlers: enqueue only -------------------------------------------------

    def _job_key(self, pod: dict) -> Optional[str]:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        return f"{pod['metadata'].get('namespace')}/{ref['name']}"

    def _pod_added(self, pod: dict) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.expectations.observed_add(key)
            self.queue.add(key)

    def _pod_changed(self, pod: dict) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.queue.add(key)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._job_key(pod)
        if key is not None:
            self.expectations.observed_delete(key, object_key(pod))
            self.queue.add(key)

    # -- reconcile --------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        job = self.job_informer.store.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            self.expectations.forget(key)
            return
        pods = self.pod_informer.store.by_index(CONTROLLER_INDEX, job["metadata"]["uid"])
        plan = plan_job(job, pods, self.clock.wall(), self.backoff)
        if not self.expectations.satisfied(key):
            plan.create, plan.delete = [], []
        await self._delete(key, job, plan)
        if "active" in plan.status:
            plan.status["active"] += await self._create(key, job, plan)
        await self._write_status(job, plan)
        if plan.requeue_after is not None:
            self.queue.add_after(key, max(0.0, plan.requeue_after) + 0.05)

    async def _delete(self, key: str, job: dict, plan: JobPlan) -> None:
        if not plan.delete:
            return
        self.expectations.expect(key, deletes=[object_key(p) for p in plan.delete])
        results = await asyncio.gather(*(self._delete_pod(p) for p in plan.delete), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        for pod, result in zip(plan.delete, results):
            if isinstance(result, Exception) or result is False:
                self.expectations.observed_delete(key, object_key(pod))
        if errors:
            raise errors[0]

    async def _delete_pod(self, pod: dict) -> bool:
        """Delete a pod the plan drops; False (nothing deleted) when the live pod has already
        finished: the cache showed it running, and a finished pod is the Job's record of its
        success or failure, never an extra one to remove."""
        meta = pod["metadata"]
        try:
            live = await self.client.get(PODS, meta["name"], meta["namespace"])
            if (live.get("status") or {}).get("phase") in ("Succeeded", "Failed") and \
                    not (live["metadata"].get("uid") != meta.get("uid")):
                return False
            await self.client.delete(PODS, meta["name"], meta["namespace"])
        except NotFound:
            pass
        return True

    async def _create(self, key: str, job: dict, plan: JobPlan) -> int:
        """Create the pods the plan asks for (at most ``burst``); how many were created."""
        indexes = plan.create[:self.burst]
        if not indexes:
            return 0
        self.expectations.expect(key, adds=len(indexes))
        namespace = job["metadata"]["namespace"]
        pending = iter(indexes)

        def create_next():
            return self.client.create(PODS, pod_for_job(job, next(pending)), namespace)

        created, error = await slow_start(len(indexes), create_next, initial=SLOW_START_INITIAL)
        for _ in range(len(indexes) - created):
            self.expectations.observed_add(key)
        if created:
            self.ctx.recorder.emit(job, "Normal", "SuccessfulCreate", f"Created {created} pod(s)")
        if error is not None:
            self.ctx.recorder.emit(job, "Warning", "FailedCreate", f"Error creating: {error}")
            raise error
        if len(plan.create) > len(indexes):
            self.queue.add(key)
        return created

    async def _write_status(self, job: dict, plan: JobPlan) -> None:
        current = job.get("status") or {}
        if plan.status == current:
            return
        patch = {k: v for k, v in plan.status.items()}
        patch.update({k: None for k in current if k not in plan.status})
        meta = job["metadata"]
        await self.client.patch(JOBS, meta["name"], {"status": patch}, meta["namespace"], subresource="status")
        if plan.finished is not None and finished_condition(job) is None:
            kind = "Normal" if plan.finished["type"] == "Complete" else "Warning"
            reason = "Completed" if plan.finished["type"] == "Complete" else plan.finished["reason"]
            self.ctx.recorder.emit(job, kind, reason, plan.finished["message"])


def new_controller(ctx: ControllerContext) -> JobController:
    backoff = Backoff(float(ctx.options.get("job_backoff_base", Backoff.base)),
                      float(ctx.options.get("job_backoff_cap", Backoff.cap)))
    return JobController(ctx, backoff=backoff)
