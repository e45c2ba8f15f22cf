"""The leader scheduler and controller-manager killed while they are busy: the standbys take
over, the ReplicaSet never has more pods than it asks for, and no node gets more pods than it
has room for (a pod bound by the dead leader is never bound again by its successor)."""

from __future__ import annotations

import signal
import threading

from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import NODES, PODS, REPLICASETS
from pkube.client.rest import ApiClient
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.processes import lease_holder, start_component, stop_all
from tests.integration.test_controllers_replicaset import replica_set
from tests.integration.test_scheduler import node

REPLICAS, NODE_COUNT, CPU_PER_NODE = 40, 3, 10      # room for 30 pods of 1 CPU
TIMING = ["--leader-elect", "--lease-duration", "2", "--renew-deadline", "1.5", "--retry-period", "0.25"]


class PodCounter:
    """Follows the pods in a thread: the most live pods ever seen at once, each pod's node,
    and the pods seen on a second node (``moved``)."""

    def __init__(self, api: ApiClient):
        self.api, self.live, self.most, self.nodes, self.moved = api, set(), 0, {}, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        version = self.api.list(PODS, "default")["metadata"]["resourceVersion"]
        while not self.stop.is_set():
            for kind, pod in self.api.watch(PODS, "default", resource_version=version, timeout_seconds=1):
                version = pod["metadata"]["resourceVersion"]
                self._see(kind, pod)

    def _see(self, kind: str, pod: dict) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return                                   # a BOOKMARK
        name = pod["metadata"]["name"]
        if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            self.live.discard(name)
        else:
            self.live.add(name)
            self.most = max(self.most, len(self.live))
            bound = pod["spec"].get("nodeName")
            if bound and self.nodes.setdefault(name, bound) != bound:
                self.moved.append(name)


def _start(module: str, kubeconfig, identity: str, extra: list[str], tmp_path):
    return start_component(f"pkube.{module}", ["--kubeconfig", str(kubeconfig), "--identity", identity, *TIMING, *extra],
                           tmp_path / f"{module}-{identity}.log")


def test_killed_leaders_overshoot_nothing(apiserver, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    managers = ["--controllers", "replicaset"]
    procs = {}
    with ApiClient(ClientConfig(apiserver.url)) as api:
        counter = PodCounter(api)
        try:
            for i in range(NODE_COUNT):
                api.create(NODES, node(f"n{i}", cpu=str(CPU_PER_NODE)))
            procs["scheduler-a"] = _start("scheduler", kubeconfig, "a", [], tmp_path)
            procs["controllers-a"] = _start("controllers", kubeconfig, "a", managers, tmp_path)
            wait_for(lambda: lease_holder(api, "kube-scheduler", "kube-system") == "a"
                     and lease_holder(api, "kube-controller-manager", "kube-system") == "a", timeout=30)
            procs["scheduler-b"] = _start("scheduler", kubeconfig, "b", [], tmp_path)
            procs["controllers-b"] = _start("controllers", kubeconfig, "b", managers, tmp_path)
            counter.thread.start()
            rs = replica_set("web", REPLICAS)
            rs["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
            api.create(REPLICASETS, rs, "default")
            wait_for(lambda: len(counter.nodes) >= 5, timeout=30)     # both leaders at work
            for name in ("scheduler-a", "controllers-a"):
                procs[name].send_signal(signal.SIGKILL)
            # the standbys take both Leases over (the dead leaders' expire: TIMING's lease duration)
            wait_for(lambda: lease_holder(api, "kube-scheduler", "kube-system") == "b"
                     and lease_holder(api, "kube-controller-manager", "kube-system") == "b", timeout=30)
            wait_for(lambda: len(counter.live) == REPLICAS and len(counter.nodes) == NODE_COUNT * CPU_PER_NODE,
                     timeout=60)
            assert counter.most == REPLICAS and counter.moved == []
            per_node = {n: list(counter.nodes.values()).count(n) for n in set(counter.nodes.values())}
            assert per_node == {f"n{i}": CPU_PER_NODE for i in range(NODE_COUNT)}
        finally:
            counter.stop.set()
            if counter.thread.is_alive():            # its watch ends within timeout_seconds
                counter.thread.join(timeout=10)
            stop_all(list(procs.values()))
