"""The real kubectl (v1.32) and pkubectl drive StatefulSet and DaemonSet rollouts that the
controllers carry out: get (tables), rollout status, history, undo, and scale."""

import asyncio
import io
import shutil

import pytest

from pkube.client.resources import DAEMONSETS, PODS, STATEFULSETS
from pkube.kubectl.cli import main as pkubectl_main
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import until
from tests.integration.test_controllers_daemonset import daemonset, rolled_out, with_cluster
from tests.integration.test_controllers_statefulset import statefulset, status_is
from tests.integration.test_controllers_support import with_controllers

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


async def kubectl(kubeconfig, *args, timeout=30):
    proc = await asyncio.create_subprocess_exec(KUBECTL, "--kubeconfig", str(kubeconfig), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()


async def pkubectl(kubeconfig, *args):
    """pkubectl in a thread (it blocks), so the controllers on this loop keep running."""
    def run():
        out, err = io.StringIO(), io.StringIO()
        code = pkubectl_main(["--kubeconfig", str(kubeconfig), *args], out, err)
        return code, out.getvalue() + err.getvalue()
    return await asyncio.to_thread(run)


async def image_of(client, pod):
    return (await client.get(PODS, pod, "default"))["spec"]["containers"][0]["image"]


@needs_kubectl
def test_statefulset_rollout_history_undo_and_scale_with_kubectl_and_pkubectl(apiserver, tmp_path):
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async def scenario(client):
        await client.create(STATEFULSETS, statefulset("db", 2, claims=()), "default")
        code, out = await kubectl(config, "rollout", "status", "sts/db", "--timeout=20s")
        assert code == 0 and "partitioned roll out complete: 2 new pods have been updated" in out, out
        code, out = await kubectl(config, "get", "sts", "db", "-o", "wide")
        assert out.split("\n")[0].split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"], out
        assert out.split("\n")[1].split()[:2] == ["db", "2/2"], out
        code, mine = await pkubectl(config, "get", "sts", "-o", "wide")
        assert code == 0 and mine.split("\n")[0].split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"], mine

        code, out = await kubectl(config, "set", "image", "sts/db", "c=busybox:2")
        assert code == 0, out
        code, out = await pkubectl(config, "rollout", "status", "statefulset/db", "--timeout=20")
        assert code == 0 and "partitioned roll out complete: 2 new pods" in out, out
        assert [await image_of(client, p) for p in ("db-0", "db-1")] == ["busybox:2", "busybox:2"]
        code, out = await kubectl(config, "rollout", "history", "sts/db")
        assert code == 0 and out.split()[1:6] == ["REVISION", "CHANGE-CAUSE", "1", "<none>", "2"], out

        code, out = await kubectl(config, "rollout", "undo", "sts/db")
        assert code == 0 and "rolled back" in out, out
        await until(status_is(client, "db", updatedReplicas=2, readyReplicas=2, currentReplicas=2))
        assert [await image_of(client, p) for p in ("db-0", "db-1")] == ["busybox:1", "busybox:1"]
        code, out = await pkubectl(config, "rollout", "history", "sts/db")
        assert code == 0 and out.split()[1:] == ["REVISION", "CHANGE-CAUSE", "2", "<none>", "3", "<none>"], out
        code, out = await pkubectl(config, "rollout", "undo", "sts/db", "--to-revision=2")
        assert code == 0 and "rolled back" in out, out
        await until(status_is(client, "db", updatedReplicas=2, readyReplicas=2))
        assert await image_of(client, "db-1") == "busybox:2"
        code, out = await pkubectl(config, "rollout", "undo", "sts/db", "--to-revision=9")
        assert code != 0 and "unable to find specified revision 9 in history" in out, out

        code, out = await kubectl(config, "scale", "sts/db", "--replicas=3")
        assert code == 0, out
        await until(status_is(client, "db", replicas=3, readyReplicas=3))
    with_controllers(apiserver, scenario, ["statefulset"], timeout=120)


@needs_kubectl
def test_daemonset_table_rollout_status_history_and_undo(apiserver, tmp_path):
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async def scenario(client, hollow):
        await client.create(DAEMONSETS, daemonset("agent", nodeSelector={"kubernetes.io/os": "linux"}), "default")
        code, out = await kubectl(config, "rollout", "status", "ds/agent", "--timeout=20s")
        assert code == 0 and 'daemon set "agent" successfully rolled out' in out, out
        code, out = await kubectl(config, "get", "ds")
        header, row = out.split("\n")[:2]
        assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                  "SELECTOR", "AGE"], out
        assert row.split()[:7] == ["agent", "2", "2", "2", "2", "2", "kubernetes.io/os=linux"], out
        code, mine = await pkubectl(config, "get", "ds")
        assert code == 0 and mine.split("\n")[0].split() == header.split(), mine
        code, out = await kubectl(config, "get", "controllerrevisions")
        assert out.split("\n")[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"], out
        assert out.split("\n")[1].split()[1:3] == ["daemonset.apps/agent", "1"], out

        code, out = await kubectl(config, "set", "image", "ds/agent", "c=busybox:2")
        assert code == 0, out
        code, out = await pkubectl(config, "rollout", "status", "ds/agent", "--timeout=20")
        assert code == 0 and 'daemon set "agent" successfully rolled out' in out, out
        code, out = await pkubectl(config, "rollout", "history", "daemonset/agent")
        assert code == 0 and out.split()[1:] == ["REVISION", "CHANGE-CAUSE", "1", "<none>", "2", "<none>"], out
        code, out = await kubectl(config, "rollout", "undo", "ds/agent")
        assert code == 0 and "rolled back" in out, out
        await until(rolled_out(client, "agent", 2))

        async def all_old():
            pods = (await client.list(PODS, "default", label_selector="app=agent"))["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return len(live) == 2 and all(p["spec"]["containers"][0]["image"] == "busybox:1" for p in live)
        await until(all_old)
        code, out = await kubectl(config, "rollout", "history", "ds/agent")
        assert code == 0 and out.split()[1:] == ["REVISION", "CHANGE-CAUSE", "2", "<none>", "3", "<none>"], out
    with_cluster(apiserver, 2, scenario)
