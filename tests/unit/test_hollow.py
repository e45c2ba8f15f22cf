"""Hollow nodes: the objects they write, pod IPs, and the reconcilers over FakeApi and a fake clock."""

import asyncio
import datetime as dt

import pytest

from pkube.client.clock import FakeClock
from pkube.client.errors import error_for_status, status_for
from pkube.client.fake import FakeApi
from pkube.client.resources import LEASES, NODES, PODS
from pkube.cluster.hollow import (HollowConfig, HollowNodes, PodAddresses, host_ips, lease_object,
                            node_names, node_needs_report, node_object, node_status_patch,
                            pod_is_reported, pod_running_status)

WALL = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class DeletingFakeApi(FakeApi):
    """FakeApi plus delete, recorded like the other writes."""

    async def delete(self, resource, name, namespace=None, grace_period_seconds=None, preconditions=None):
        key = self._key(resource, namespace, name)
        if key not in self.objects:
            raise error_for_status(status_for(404, "NotFound", f"{name!r} not found"))
        self.writes.append(("delete", resource.plural, name, grace_period_seconds))
        return self.objects.pop(key)


def pod(name="p", node="n-0", containers=("a",), status=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": c, "image": "busybox"} for c in containers]},
            "status": status or {"phase": "Pending"}}


def ready(obj):
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_names_and_host_ips():
    assert node_names(3, "x-") == ["x-0", "x-1", "x-2"]
    assert host_ips(["a", "b"], "10.0.0.0/24") == {"a": "10.0.0.1", "b": "10.0.0.2"}
    with pytest.raises(ValueError, match="room for 2 nodes"):
        host_ips(["a", "b", "c"], "10.0.0.0/30")
    with pytest.raises(ValueError):
        node_names(-1)


def test_node_object_is_a_ready_registered_kubelet():
    node = node_object("n-0", "127.30.0.1", HollowConfig(cpu="4", memory="8Gi", pods="20"), WALL)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n-0"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi", "pods": "20",
                                             "ephemeral-storage": "100Gi"}
    assert ready(node)["status"] == "True" and ready(node)["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"
    assert {"type": "InternalIP", "address": "127.30.0.1"} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == HollowConfig().kubelet_version


def test_node_report_needed_when_not_ready_or_heartbeat_is_old():
    node = node_object("n", "1.1.1.1", HollowConfig(), WALL)
    assert not node_needs_report(node, WALL + dt.timedelta(seconds=10), 60)
    assert node_needs_report(node, WALL + dt.timedelta(seconds=60), 60)
    ready(node)["status"] = "Unknown"
    assert node_needs_report(node, WALL, 60)


def test_status_patch_keeps_transition_times_of_unchanged_conditions():
    node = node_object("n", "1.1.1.1", HollowConfig(), WALL)
    later = WALL + dt.timedelta(minutes=5)
    patch = node_status_patch(node, later)
    assert ready(patch)["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready(patch)["lastHeartbeatTime"] == "2026-01-01T00:05:00Z"
    ready(node)["status"] = "Unknown"
    assert ready(node_status_patch(node, later))["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_lease_is_owned_by_its_node():
    lease = lease_object("n", HollowConfig(), WALL, node_uid="u1")
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u1"}
    assert lease["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"
    assert "ownerReferences" not in lease_object("n", HollowConfig(), WALL)["metadata"]


def test_running_status_has_every_condition_and_container():
    p = pod(containers=("a", "b"))
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    status = pod_running_status(p, "127.30.0.1", "10.244.0.2", WALL)
    assert status["phase"] == "Running" and status["podIP"] == "10.244.0.2"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
        "ContainersReady": "True", "PodScheduled": "True", "pkube.io/Simulated": "True"}
    simulated = next(c for c in status["conditions"] if c["type"] == "pkube.io/Simulated")
    assert "no container runs" in simulated["message"]
    assert [c["name"] for c in status["containerStatuses"]] == ["a", "b"]
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    reported = {**p, "status": status}
    assert pod_is_reported(reported, "127.30.0.1", "10.244.0.2")
    assert not pod_is_reported(reported, "127.30.0.1", "10.244.0.3")
    assert not pod_is_reported(p, "127.30.0.1", None)
    assert "podIP" not in pod_running_status(p, "127.30.0.1", None, WALL)


def test_pod_addresses_are_unique_per_node_reused_and_relearned():
    book = PodAddresses()
    first = book.address_for("ns/a", "n", "10.244.1.0/24", None)
    assert first == "10.244.1.2"
    assert book.address_for("ns/a", "n", "10.244.1.0/24", None) == first
    assert book.address_for("ns/b", "n", "10.244.1.0/24", None) == "10.244.1.3"
    assert book.address_for("ns/c", "n", "10.244.1.0/24", "10.244.1.9") == "10.244.1.9"   # re-learned
    assert book.address_for("ns/d", "n", "10.244.1.0/24", "10.244.1.9") == "10.244.1.4"   # taken
    book.release("ns/a")
    assert book.address_for("ns/e", "n", "10.244.1.0/24", None) == "10.244.1.2"
    assert book.address_for("ns/f", "n", None, None) is None
    assert book.address_for("ns/g", "n", "10.244.2.0/30", None) == "10.244.2.2"
    assert book.address_for("ns/h", "n", "10.244.2.0/30", None) is None                  # full


def hollow_over(api, clock, **config):
    return HollowNodes(api, ["n-0", "n-1"], HollowConfig(**config), clock)


def test_reconcile_node_creates_then_reports_only_when_stale():
    async def scenario():
        api, clock = FakeApi(), FakeClock()
        hollow = hollow_over(api, clock, status_report_period=60)
        await hollow.reconcile_node("n-0")
        assert [w[:3] for w in api.writes] == [("create", "nodes", "n-0")]
        hollow.nodes.store.put(await api.get(NODES, "n-0"))
        await hollow.reconcile_node("n-0")
        assert len(api.writes) == 1                              # fresh: nothing to write
        clock.advance(61)
        await hollow.reconcile_node("n-0")
        assert [w[:3] for w in api.writes][1:] == [("patch", "nodes", "n-0")]
        hollow.stop_renewing("n-0")
        clock.advance(61)
        await hollow.reconcile_node("n-0")
        assert len(api.writes) == 2                              # a stopped node reports nothing
    asyncio.run(scenario())


def test_lease_renewals_stop_and_resume():
    async def scenario():
        api, clock = FakeApi(), FakeClock()
        hollow = hollow_over(api, clock, renew_interval=10)
        await hollow.renew_lease("n-0")
        await hollow.renew_lease("n-0")
        renewals = [w for w in api.writes if w[1] == "leases"]
        assert [w[0] for w in renewals] == ["create", "replace"]
        hollow.stop_renewing("n-0")
        await hollow.renew_lease("n-0")
        assert len([w for w in api.writes if w[1] == "leases"]) == 2
        hollow.resume_renewing("n-0")
        clock.advance(5)
        await hollow.renew_lease("n-0")
        lease = await api.get(LEASES, "n-0", "kube-node-lease")
        assert lease["spec"]["renewTime"] == "2026-01-01T00:00:05.000000Z"
        with pytest.raises(ValueError):
            hollow.stop_renewing("not-mine")
    asyncio.run(scenario())


def test_reconcile_pod_reports_once_and_finishes_deletion():
    async def scenario():
        api, clock = DeletingFakeApi(), FakeClock()
        hollow = hollow_over(api, clock)
        node = node_object("n-0", "127.30.0.1", hollow.config, clock.wall())
        node["spec"]["podCIDR"] = "10.244.3.0/24"
        hollow.nodes.store.put(node)
        hollow.pods.store.put(await api.create(PODS, pod("p")))
        await hollow.reconcile_pod("default/p")
        reported = await api.get(PODS, "p", "default")
        assert reported["status"]["phase"] == "Running" and reported["status"]["podIP"] == "10.244.3.2"
        hollow.pods.store.put(reported)
        await hollow.reconcile_pod("default/p")
        assert [w[0] for w in api.writes] == ["create", "patch"]       # already reported: no write
        reported["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
        await hollow.reconcile_pod("default/p")
        assert api.writes[-1] == ("delete", "pods", "p", 0)
        host = pod("host")
        host["spec"]["hostNetwork"] = True
        hollow.pods.store.put(await api.create(PODS, host))
        await hollow.reconcile_pod("default/host")
        assert (await api.get(PODS, "host", "default"))["status"]["podIP"] == "127.30.0.1"
        hollow.pods.store.put(pod("other", node="somebody-else"))
        await hollow.reconcile_pod("default/other")
        assert api.writes[-1][0] == "patch"                           # not ours: untouched
    asyncio.run(scenario())


def test_command_line_flags_and_errors(tmp_path, capsys):
    from pkube.cluster.hollow import main, parse_args
    args = parse_args(["--nodes", "3", "--name-prefix", "x-", "--stop-renewing", "x-1", "--stop-renewing", "x-2",
                       "--renew-interval", "5"])
    assert (args.nodes, args.name_prefix, args.stop_renewing, args.renew_interval) == (3, "x-", ["x-1", "x-2"], 5.0)
    assert main(["--kubeconfig", str(tmp_path / "missing"), "--nodes", "1"]) == 2
    assert "hollow:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not one of"):
        HollowNodes(FakeApi(), ["a"], stop_renewing=["b"])
