"""Jobs, CronJobs (under an injected clock), the TTL controller, ReplicationControllers and the pod
garbage collector against the real apiserver.

Pods are run by a scripted kubelet (each pod is reported Running, then Succeeded or Failed as the
test says) or, for the Job of 5 completions, by hollow nodes with the real scheduler.
"""

import asyncio
import datetime as dt

import httpx

from pkube.client.aio import AsyncApiClient
from pkube.client.clock import FakeClock
from pkube.client.errors import NotFound
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import CRONJOBS, EVENTS, JOBS, NODES, PODS, REPLICATIONCONTROLLERS
from pkube.cluster.hollow import HollowConfig, HollowNodes, node_names
from pkube.controllers.manager import ControllerManager
from pkube.scheduler.scheduler import Scheduler
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import FakeKubelet

CONTAINER = {"name": "work", "image": "busybox", "command": ["true"]}


def job_body(name, **spec):
    template = {"spec": {"restartPolicy": spec.pop("restart_policy", "Never"), "containers": [dict(CONTAINER)]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": template, **spec}}


class ScriptedKubelet(FakeKubelet):
    """Plays the kubelets: ``outcome(pod)`` says what becomes of a new pod: "Succeeded",
    "Failed" (exit code 1) or None (it keeps running). Deleted pods are removed at once."""

    def __init__(self, client, outcome):
        super().__init__(client)
        self.outcome = outcome

    async def report(self, pod):
        meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            result = self.outcome(pod)
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            status = {"phase": result or "Running", "startTime": now}
            if result:
                status["containerStatuses"] = [{"name": "work", "ready": False, "restartCount": 0, "image": "busybox",
                                                "imageID": "", "state": {"terminated": {
                                                    "exitCode": 0 if result == "Succeeded" else 1,
                                                    "finishedAt": now}}}]
            await self.client.patch(PODS, meta["name"], {"status": status}, meta["namespace"], subresource="status")


def run_stack(apiserver, scenario, names, outcome=None, clock=None, hollow_nodes=0, timeout=60, **options):
    """Run ``scenario(client)`` while the named controllers run (with ``clock``), and either a
    ScriptedKubelet (``outcome``) or ``hollow_nodes`` hollow nodes with the scheduler."""
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            manager = ControllerManager(client, list(names), clock=clock, **options)
            tasks = [asyncio.ensure_future(manager.run())]
            if outcome is not None:
                tasks.append(asyncio.ensure_future(ScriptedKubelet(client, outcome).run()))
            if hollow_nodes:
                hollow = HollowNodes(client, node_names(hollow_nodes, "h-"), HollowConfig(run_seconds=0.2))
                tasks += [asyncio.ensure_future(hollow.run()), asyncio.ensure_future(Scheduler(client).run())]
                await asyncio.wait_for(hollow.wait_registered(), 30)
            try:
                await asyncio.wait_for(scenario(client), timeout)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


async def finished(client, name, kind):
    async def check():
        job = await client.get(JOBS, name, "default")
        cond = condition(job, kind)
        return job if cond and cond["status"] == "True" else None
    return await until(check, timeout=45)


async def pods_of(client, job):
    selector = f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"
    return (await client.list(PODS, "default", label_selector=selector))["items"]


def test_job_of_five_completions_with_parallelism_two_completes_on_hollow_nodes(apiserver):
    async def scenario(client):
        created = await client.create(JOBS, job_body("five", completions=5, parallelism=2), "default")
        uid = created["metadata"]["uid"]
        assert created["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        most_active = 0

        async def complete():
            nonlocal most_active
            job = await client.get(JOBS, "five", "default")
            most_active = max(most_active, (job.get("status") or {}).get("active", 0))
            return job if (condition(job, "Complete") or {}).get("status") == "True" else None
        job = await until(complete, timeout=45)
        assert job["status"]["succeeded"] == 5 and job["status"].get("active", 0) == 0
        assert job["status"]["startTime"] and job["status"]["completionTime"]
        assert most_active <= 2
        pods = await pods_of(client, job)
        assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
        assert all(p["metadata"]["labels"]["job-name"] == "five" for p in pods)
    run_stack(apiserver, scenario, ["job"], hollow_nodes=3)


def test_indexed_job_runs_every_index_once(apiserver):
    async def scenario(client):
        await client.create(JOBS, job_body("idx", completions=4, parallelism=2, completionMode="Indexed"), "default")
        job = await finished(client, "idx", "Complete")
        assert job["status"]["completedIndexes"] == "0-3" and job["status"]["succeeded"] == 4
        pods = await pods_of(client, job)
        indexes = sorted(int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]) for p in pods)
        assert indexes == [0, 1, 2, 3]
        assert {p["spec"]["hostname"] for p in pods} == {"idx-0", "idx-1", "idx-2", "idx-3"}
        env = pods[0]["spec"]["containers"][0]["env"]
        assert env[0]["name"] == "JOB_COMPLETION_INDEX"
    run_stack(apiserver, scenario, ["job"], outcome=lambda pod: "Succeeded")


def test_failing_pods_stop_at_the_backoff_limit(apiserver):
    async def scenario(client):
        await client.create(JOBS, job_body("doomed", completions=1, backoffLimit=2), "default")
        job = await finished(client, "doomed", "Failed")
        cond = condition(job, "Failed")
        assert cond["reason"] == "BackoffLimitExceeded"
        assert cond["message"] == "Job has reached the specified backoff limit"
        assert job["status"]["failed"] == 3 and not job["status"].get("active")
        assert len(await pods_of(client, job)) == 3
    run_stack(apiserver, scenario, ["job"], outcome=lambda pod: "Failed", job_backoff_base=0.05)


def test_active_deadline_fails_the_job_and_removes_its_pods(apiserver):
    async def scenario(client):
        await client.create(JOBS, job_body("slow", completions=1, activeDeadlineSeconds=1), "default")
        job = await finished(client, "slow", "Failed")
        assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
        await until(lambda: _none_left(client, job))
    run_stack(apiserver, scenario, ["job"], outcome=lambda pod: None)


async def _none_left(client, job):
    return not await pods_of(client, job)


def test_suspended_job_runs_nothing_until_resumed(apiserver):
    async def scenario(client):
        await client.create(JOBS, job_body("later", completions=1, suspend=True), "default")

        async def suspended():
            job = await client.get(JOBS, "later", "default")
            return (condition(job, "Suspended") or {}).get("status") == "True" and job
        job = await until(suspended)
        assert not await pods_of(client, job) and "startTime" not in job["status"]
        await client.patch(JOBS, "later", {"spec": {"suspend": False}}, "default")
        job = await finished(client, "later", "Complete")
        assert condition(job, "Suspended")["reason"] == "JobResumed"
    run_stack(apiserver, scenario, ["job"], outcome=lambda pod: "Succeeded")


def test_finished_job_is_deleted_after_its_ttl_with_its_pods(apiserver):
    async def scenario(client):
        await client.create(JOBS, job_body("brief", completions=1, ttlSecondsAfterFinished=0), "default")

        async def gone():
            try:
                await client.get(JOBS, "brief", "default")
            except NotFound:
                return True
            return False
        await until(gone, timeout=30)
        await until(lambda: _no_pods(client), timeout=30)
    run_stack(apiserver, scenario, ["job", "ttlafterfinished", "garbagecollector"], outcome=lambda pod: "Succeeded")


async def _no_pods(client):
    return not (await client.list(PODS, "default"))["items"]


def cron_job_body(name, schedule, **spec):
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, **spec, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [dict(CONTAINER)]}}}}}}


def test_cron_job_fires_under_an_injected_clock(apiserver):
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))

    async def scenario(client):
        cj = await client.create(CRONJOBS, cron_job_body("tick", "*/5 * * * *", successfulJobsHistoryLimit=1),
                                 "default")
        seen: set = set()
        for seconds in (301, 301):      # past the next */5 time and past the controller's wake-up
            clock.advance(seconds)
            job = await while_time_passes(clock, lambda: _new_job(client, cj, seen))
            seen.add(job["metadata"]["name"])
            scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            assert job["metadata"]["name"] == f"tick-{int(dt.datetime.fromisoformat(scheduled).timestamp()) // 60}"
            await finished(client, job["metadata"]["name"], "Complete")

        async def settled():
            status = (await client.get(CRONJOBS, "tick", "default")).get("status") or {}
            jobs = (await client.list(JOBS, "default"))["items"]
            return not status.get("active") and status.get("lastSuccessfulTime") and len(jobs) == 1 and status
        status = await until(settled)
        assert len(seen) == 2 and status["lastScheduleTime"]
    run_stack(apiserver, scenario, ["cronjob", "job"], outcome=lambda pod: "Succeeded", clock=clock)


async def while_time_passes(clock, check, step=0.5):
    """Poll ``check`` as ``until`` does, moving the fake clock ``step`` seconds before each poll:
    a controller that parked on the clock just as the test advanced it still wakes up."""
    async def ticking():
        clock.advance(step)
        return await check()
    return await until(ticking)


async def _new_job(client, cj, seen):
    """A Job of ``cj`` whose name is not in ``seen``, or None."""
    for job in (await client.list(JOBS, "default"))["items"]:
        refs = job["metadata"].get("ownerReferences") or []
        if refs and refs[0]["uid"] == cj["metadata"]["uid"] and job["metadata"]["name"] not in seen:
            return job
    return None


def test_forbid_skips_a_run_while_the_previous_job_runs(apiserver):
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))

    async def scenario(client):
        await client.create(CRONJOBS, cron_job_body("one", "* * * * *", concurrencyPolicy="Forbid"), "default")
        clock.advance(61)
        first = await while_time_passes(clock, lambda: _jobs_named(client, "one-"))
        await until(lambda: _has_active(client, "one"))
        clock.advance(61)

        async def skipped():
            events = (await client.list_all(EVENTS, "default"))["items"]
            return any(e["reason"] == "JobAlreadyActive" for e in events)
        await while_time_passes(clock, skipped)
        assert [j["metadata"]["name"] for j in await _jobs_named(client, "one-")] == \
            [j["metadata"]["name"] for j in first]
    run_stack(apiserver, scenario, ["cronjob", "job"], outcome=lambda pod: None, clock=clock)


async def _has_active(client, name):
    return bool(((await client.get(CRONJOBS, name, "default")).get("status") or {}).get("active"))


async def _jobs_named(client, prefix):
    return [j for j in (await client.list(JOBS, "default"))["items"] if j["metadata"]["name"].startswith(prefix)]


def test_invalid_schedule_is_refused_naming_the_field(apiserver):
    with httpx.Client(base_url=apiserver.url) as http:
        body = cron_job_body("bad", "61 * * * *")
        response = http.post("/apis/batch/v1/namespaces/default/cronjobs", json=body)
        assert response.status_code == 422
        assert [c["field"] for c in response.json()["details"]["causes"]] == ["spec.schedule"]
        table = http.get("/apis/batch/v1/namespaces/default/jobs",
                         headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
        assert [c["name"] for c in table["columnDefinitions"]][:4] == ["Name", "Status", "Completions", "Duration"]


def test_replication_controller_keeps_replicas_and_scales(apiserver):
    async def scenario(client):
        rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
              "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                                                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
        await client.create(REPLICATIONCONTROLLERS, rc, "default")
        await until(lambda: _rc_ready(client, 3))
        scale = await client.get(REPLICATIONCONTROLLERS, "web", "default", subresource="scale")
        assert scale["status"]["selector"] == "app=web" and scale["spec"]["replicas"] == 3
        await client.patch(REPLICATIONCONTROLLERS, "web", {"spec": {"replicas": 1}}, "default", subresource="scale")
        await until(lambda: _rc_ready(client, 1))
        live = [p for p in (await client.list(PODS, "default"))["items"] if not p["metadata"].get("deletionTimestamp")]
        assert len(live) == 1 and live[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"
    run_stack(apiserver, scenario, ["replicationcontroller"], outcome=lambda pod: None)


async def _rc_ready(client, replicas):
    rc = await client.get(REPLICATIONCONTROLLERS, "web", "default")
    status = rc.get("status") or {}
    live = [p for p in (await client.list(PODS, "default"))["items"] if not p["metadata"].get("deletionTimestamp")]
    return status.get("replicas") == replicas and len(live) == replicas


def test_pod_gc_removes_pods_of_gone_nodes_and_terminated_pods_beyond_the_threshold(apiserver):
    async def scenario(client):
        for i in range(4):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"done{i}"},
                   "spec": {"nodeName": "n1", "containers": [dict(CONTAINER)]}}
            await client.create(PODS, pod, "default")
            await client.patch(PODS, f"done{i}", {"status": {"phase": "Succeeded"}}, "default", subresource="status")
        orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
                  "spec": {"nodeName": "vanished", "containers": [dict(CONTAINER)]}}
        await client.create(PODS, orphan, "default")

        async def collected():
            names = sorted(p["metadata"]["name"] for p in (await client.list(PODS, "default"))["items"])
            return names == ["done2", "done3"]
        await until(collected, timeout=30)
    async def with_node(client):
        await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        await scenario(client)
    run_stack(apiserver, with_node, ["podgc"], terminated_pod_gc_threshold=2, podgc_period=0.2,
              podgc_quarantine=0.5)

