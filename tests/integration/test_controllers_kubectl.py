"""The real kubectl (v1.32) drives rollouts that the controllers carry out: rollout status,
restart, history, undo and scale."""

import asyncio
import shutil

import pytest

from pkube.client.resources import DEPLOYMENTS
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import until
from tests.integration.test_controllers_deployment import _rolled_to, deployment
from tests.integration.test_controllers_support import with_controllers

KUBECTL = shutil.which("kubectl")


async def kubectl(kubeconfig, *args, timeout=30):
    proc = await asyncio.create_subprocess_exec(KUBECTL, "--kubeconfig", str(kubeconfig), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_rollout_status_restart_history_and_undo(apiserver, tmp_path):
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("web", 3), "default")
        code, out = await kubectl(config, "rollout", "status", "deploy/web", "--timeout=20s")
        assert code == 0 and 'deployment "web" successfully rolled out' in out
        code, out = await kubectl(config, "set", "image", "deploy/web", "c=busybox:2")
        assert code == 0, out
        code, out = await kubectl(config, "rollout", "status", "deploy/web", "--timeout=20s")
        assert code == 0 and "successfully rolled out" in out
        code, out = await kubectl(config, "rollout", "history", "deploy/web")
        assert code == 0 and "REVISION" in out and "2" in out.split()
        code, out = await kubectl(config, "rollout", "undo", "deploy/web")
        assert code == 0 and "rolled back" in out, out
        await until(lambda: _rolled_to(client, "web", "busybox:1", "3"))
        code, out = await kubectl(config, "rollout", "restart", "deploy/web")
        assert code == 0, out
        code, out = await kubectl(config, "rollout", "status", "deploy/web", "--timeout=20s")
        assert code == 0 and "successfully rolled out" in out
        await until(lambda: _rolled_to(client, "web", "busybox:1", "4"))
        code, out = await kubectl(config, "scale", "deploy/web", "--replicas=5")    # the scale subresource
        assert code == 0, out
        code, out = await kubectl(config, "rollout", "status", "deploy/web", "--timeout=20s")
        assert code == 0 and "successfully rolled out" in out
        d = await until(lambda: _rolled_to(client, "web", "busybox:1", "4"))
        assert d["status"]["availableReplicas"] == 5
    with_controllers(apiserver, scenario, ["replicaset", "deployment"], timeout=120)
