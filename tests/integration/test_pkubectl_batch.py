"""pkubectl and the real kubectl on Jobs, CronJobs and ReplicationControllers against a real etcd +
apiserver (+ the job controller and a scripted kubelet where a Job must finish): create job /
cronjob (and --from=cronjob/X), get tables, wait --for=condition=complete, scale rc."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.controllers.manager import ControllerManager
from tests.integration.test_controllers_batch import ScriptedKubelet
from tests.integration.test_pkubectl_workloads import Cli, _renamed, _spec, needs_kubectl
from tests.helpers.kubeconfig import write_kubeconfig


@pytest.fixture
def cli(reused_apiserver, tmp_path):
    c = Cli(reused_apiserver.url, write_kubeconfig(tmp_path / "kubeconfig", reused_apiserver.url))
    try:
        yield c
    finally:
        c.http.close()


class Background:
    """The job controller and a scripted kubelet (every pod Succeeds) on a thread of their own."""

    def __init__(self, url: str):
        self.url, self.loop = url, asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.task = None

    async def _run(self):
        async with AsyncApiClient(ClientConfig(self.url)) as client:
            manager = ControllerManager(client, ["job"])
            await asyncio.gather(manager.run(), ScriptedKubelet(client, lambda pod: "Succeeded").run())

    async def _start(self) -> asyncio.Task:
        return asyncio.ensure_future(self._run())

    async def _stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def __enter__(self):
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@needs_kubectl
def test_create_job_makes_what_kubectl_makes_and_wait_sees_it_complete(cli):
    args = ["--image=busybox", "--", "sh", "-c", "echo done"]
    assert cli.kubectl("create", "job", "kjob", *args) == (0, "job.batch/kjob created\n", "")
    assert cli.pk("create", "job", "pjob", *args) == (0, "job.batch/pjob created\n", "")
    mine = cli.get("/apis/batch/v1/namespaces/default/jobs/pjob")
    theirs = cli.get("/apis/batch/v1/namespaces/default/jobs/kjob")
    uid_free = [{k: v for k, v in _spec(obj)["spec"].items() if k not in ("selector", "template")} for obj in (mine, theirs)]
    assert uid_free[0] == uid_free[1]
    assert mine["spec"]["template"]["spec"] == _renamed(theirs["spec"]["template"]["spec"], "kjob", "pjob")
    with Background(cli.url):
        for tool in (cli.kubectl, cli.pk):
            assert tool("wait", "--for=condition=complete", "job/pjob", "job/kjob", "--timeout=60s") == \
                (0, "job.batch/pjob condition met\njob.batch/kjob condition met\n", "")
    code, out, _ = cli.pk("get", "jobs")
    assert code == 0 and out.split("\n")[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert out.split("\n")[1].split()[:3] == ["kjob", "Complete", "1/1"]
    code, theirs_out, _ = cli.kubectl("get", "jobs")
    assert theirs_out.split("\n")[0] == out.split("\n")[0]


@needs_kubectl
def test_create_cronjob_and_a_job_from_it(cli):
    args = ["--image=busybox", "--schedule=*/5 * * * *", "--", "date"]
    assert cli.kubectl("create", "cronjob", "kcron", *args)[:2] == (0, "cronjob.batch/kcron created\n")
    assert cli.pk("create", "cronjob", "pcron", *args) == (0, "cronjob.batch/pcron created\n", "")
    mine = cli.get("/apis/batch/v1/namespaces/default/cronjobs/pcron")
    theirs = cli.get("/apis/batch/v1/namespaces/default/cronjobs/kcron")
    assert mine["spec"] == _renamed(theirs["spec"], "kcron", "pcron")
    for tool, name in ((cli.kubectl, "kmanual"), (cli.pk, "pmanual")):
        assert tool("create", "job", name, "--from=cronjob/pcron")[:2] == (0, f"job.batch/{name} created\n")
    for name in ("kmanual", "pmanual"):
        job = cli.get(f"/apis/batch/v1/namespaces/default/jobs/{name}")
        assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
        assert job["metadata"]["ownerReferences"][0]["uid"] == mine["metadata"]["uid"]
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]
    code, out, _ = cli.pk("get", "cronjobs")
    assert out.split("\n")[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert out.split("\n")[2].split()[:7] == ["pcron", "*/5", "*", "*", "*", "*", "<none>"]
    assert cli.pk("create", "job", "x", "--from=cronjob/ghost")[0] == 1
    for tool in (cli.pk, cli.kubectl):
        code, _, err = tool("create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *")
        assert code == 1 and 'spec.schedule: Invalid value: "61 * * * *"' in err


@needs_kubectl
def test_scale_replication_controller_with_kubectl(cli):
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
          "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    cli.http.post("/api/v1/namespaces/default/replicationcontrollers", json=rc).raise_for_status()
    assert cli.kubectl("scale", "rc", "web", "--replicas=4")[:2] == (0, "replicationcontroller/web scaled\n")
    assert cli.get("/api/v1/namespaces/default/replicationcontrollers/web")["spec"]["replicas"] == 4
    code, out, _ = cli.kubectl("get", "rc")
    assert out.split("\n")[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert out.split("\n")[1].split()[:4] == ["web", "4", "0", "0"]
