"""Hollow nodes against the real apiserver: registration, Leases, pods Running and Ready, deletion."""

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml

from pkube.client.aio import AsyncApiClient
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import LEASES, NODES, PODS
from pkube.cluster.hollow import HollowConfig, HollowNodes, node_names
from tests.integration.processes import stop_all

ROOT = Path(__file__).resolve().parents[2]


def pod(name, containers=("app",)):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]}}


async def until(check, timeout=20.0):
    """Poll ``check`` (a coroutine function) until it returns a truthy value; that value."""
    value = None
    for _ in range(int(timeout / 0.05)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: last {value!r}")


def with_hollow(apiserver, count, scenario, **config):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            hollow = HollowNodes(client, node_names(count, "h-"), HollowConfig(**config))
            task = asyncio.ensure_future(hollow.run())
            try:
                await asyncio.wait_for(hollow.wait_registered(), 30)
                await asyncio.wait_for(scenario(client, hollow), 60)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def condition(obj, kind):
    return next((c for c in obj["status"].get("conditions") or [] if c["type"] == kind), None)


def test_nodes_register_ready_with_leases_that_are_renewed(apiserver):
    async def scenario(client, hollow):
        nodes = {n["metadata"]["name"]: n for n in (await client.list(NODES))["items"]}
        assert sorted(nodes) == ["h-0", "h-1", "h-2"]
        node = nodes["h-1"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "h-1"
        assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
        assert condition(node, "Ready")["status"] == "True"
        assert node["status"]["allocatable"]["pods"] == "110"
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.32")
        lease = await client.get(LEASES, "h-1", "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == "h-1"
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        first = lease["spec"]["renewTime"]

        async def renewed():
            return (await client.get(LEASES, "h-1", "kube-node-lease"))["spec"]["renewTime"] != first
        await until(renewed, 5)
    with_hollow(apiserver, 3, scenario, renew_interval=0.2)


def test_bound_pods_run_ready_with_ips_from_the_pod_cidr_and_deletion_finishes(apiserver):
    async def scenario(client, hollow):
        await client.patch(NODES, "h-0", {"spec": {"podCIDR": "10.244.7.0/24"}})
        created = [await client.create(PODS, pod(f"p{i}", ("a", "b"))) for i in range(3)]
        await client.create(PODS, pod("elsewhere"))
        for p in created:
            await client.bind(p, "h-0")
        await client.bind(await client.get(PODS, "elsewhere"), "not-hollow")

        async def all_running():
            pods = [await client.get(PODS, f"p{i}") for i in range(3)]
            return pods if all(p["status"].get("phase") == "Running" for p in pods) else None
        pods = await until(all_running)
        for p in pods:
            status = p["status"]
            assert status["hostIP"] == "127.30.0.1"
            assert condition(p, "Ready")["status"] == "True"
            assert condition(p, "ContainersReady")["status"] == "True"
            assert condition(p, "PodScheduled")["status"] == "True"
            assert [c["name"] for c in status["containerStatuses"]] == ["a", "b"]
            assert all(c["ready"] and "startedAt" in c["state"]["running"] for c in status["containerStatuses"])
        ips = sorted(p["status"]["podIP"] for p in pods)
        assert len(set(ips)) == 3 and all(ip.startswith("10.244.7.") for ip in ips)
        assert (await client.get(PODS, "elsewhere"))["status"]["phase"] == "Pending"

        await client.delete(PODS, "p1")                       # graceful: the hollow kubelet finishes it

        async def gone():
            names = {p["metadata"]["name"] for p in (await client.list(PODS, "default"))["items"]}
            return "p1" not in names
        await until(gone)
    with_hollow(apiserver, 2, scenario)


def test_stopped_node_keeps_its_lease_unrenewed_until_resumed(apiserver):
    async def scenario(client, hollow):
        hollow.stop_renewing("h-0")
        await asyncio.sleep(0.3)                              # a renewal in flight may land
        frozen = (await client.get(LEASES, "h-0", "kube-node-lease"))["spec"]["renewTime"]
        other = (await client.get(LEASES, "h-1", "kube-node-lease"))["spec"]["renewTime"]

        async def other_renewed():
            return (await client.get(LEASES, "h-1", "kube-node-lease"))["spec"]["renewTime"] != other
        await until(other_renewed, 5)
        await until(other_renewed, 5)
        assert (await client.get(LEASES, "h-0", "kube-node-lease"))["spec"]["renewTime"] == frozen
        hollow.resume_renewing("h-0")

        async def resumed():
            return (await client.get(LEASES, "h-0", "kube-node-lease"))["spec"]["renewTime"] != frozen
        await until(resumed, 5)
    with_hollow(apiserver, 2, scenario, renew_interval=0.1)


def test_node_marked_not_ready_is_reported_ready_again(apiserver):
    async def scenario(client, hollow):
        node = await client.get(NODES, "h-0")
        for c in node["status"]["conditions"]:
            if c["type"] == "Ready":
                c.update(status="Unknown", reason="NodeStatusUnknown")
        await client.replace(NODES, node, subresource="status")

        async def ready_again():
            return condition(await client.get(NODES, "h-0"), "Ready")["status"] == "True"
        await until(ready_again, 10)
    with_hollow(apiserver, 1, scenario)


def test_command_line_registers_nodes(apiserver, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    log = open(tmp_path / "hollow.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pkube.cluster.hollow", "--kubeconfig", str(kubeconfig),
                             "--nodes", "4", "--name-prefix", "cli-"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        async def registered():
            async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
                async def four():
                    names = sorted(n["metadata"]["name"] for n in (await client.list(NODES))["items"])
                    return names if len(names) == 4 else None
                return await until(four, 30)
        assert asyncio.run(registered()) == ["cli-0", "cli-1", "cli-2", "cli-3"]
    finally:
        stop_all([proc])
        log.close()


def test_restart_keeps_pod_ips_and_reports_new_pods(apiserver):
    async def main():
        async with AsyncApiClient(ClientConfig(apiserver.url)) as client:
            async def running(names):
                pods = [await client.get(PODS, n) for n in names]
                return pods if all(p["status"].get("phase") == "Running" for p in pods) else None

            async def session(expect):
                """One hollow process lifetime: wait for the pods ``expect`` to run on r-0."""
                hollow = HollowNodes(client, node_names(1, "r-"), HollowConfig())
                task = asyncio.ensure_future(hollow.run())
                try:
                    await asyncio.wait_for(hollow.wait_registered(), 30)
                    return await until(lambda: running(expect))
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

            async def bind(name):
                await client.bind(await client.create(PODS, pod(name)), "r-0")
            await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "r-0"},
                                        "spec": {"podCIDR": "10.244.9.0/24"}})
            await bind("old")
            before = await session(["old"])
            await bind("a-new")                                  # listed before "old" at the restart
            after = await session(["old", "a-new"])
            assert after[0]["status"]["podIP"] == before[0]["status"]["podIP"]
            assert after[1]["status"]["podIP"] != after[0]["status"]["podIP"]
            assert len(list((await client.list(NODES))["items"])) == 1
    asyncio.run(main())
