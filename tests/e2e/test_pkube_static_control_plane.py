"""The control plane as static pods of the kubelet, kubeadm style, on the e2e node cluster
(`pkube up -d` with a kubelet: the default since the control plane became static pods).

One kubelet runs on a host at a time, so these tests use the session's `node_cluster`; the
last one takes it down, checks nothing of it is left, and brings it up again for the tests
that follow.
"""

from __future__ import annotations

import contextlib

import ipaddress
import json
import os
import signal
import subprocess

import httpx

from pkube.cluster.manifests import CONTROL_PLANE
from pkube.kubelet.containers import POD_NAME, POD_UID
from pkube.runtime.network import veth_name
from pkube.runtime.runtime import Runtime
from tests.e2e.conftest import LocalCluster, pkube, start_cluster, wait_node_ready
from tests.helpers.waiting import wait_for

NODE = "e2e-node"
BRIDGE = "pkube-pods"
POD_CGROUP = "kubepods"
OWN_PROGRAMS = ("-m pkube.cluster ", "-m pkube.kubelet ", "-m pkube.proxy ", "-m pkube.scheduler ", "-m pkube.controllers ", "etcd ")


def kubectl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)


def kube_system_pods(cluster: LocalCluster) -> dict[str, dict]:
    result = kubectl(cluster, "get", "pods", "-n", "kube-system", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {p["metadata"]["name"]: p for p in json.loads(result.stdout)["items"]}


def runtime_of(cluster: LocalCluster) -> Runtime:
    return Runtime(cluster.data_dir / "kubelet" / "runtime")


def running_apiserver(cluster: LocalCluster):
    """The running container of the kube-apiserver static pod, or None."""
    records = runtime_of(cluster).list(labels={POD_NAME: f"kube-apiserver-{NODE}"})
    return records[0] if records else None


def readyz(cluster: LocalCluster) -> bool:
    try:
        with cluster.http(timeout=2) as http:
            return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_the_control_plane_is_listed_as_running_static_pods_in_kube_system(node_cluster):
    names = [f"{name}-{NODE}" for name in CONTROL_PLANE]

    def all_running():
        pods = kube_system_pods(node_cluster)
        return all(pods.get(n, {}).get("status", {}).get("phase") == "Running" for n in names) and pods
    pods = wait_for(all_running, 60)
    for name in names:
        meta, spec = pods[name]["metadata"], pods[name]["spec"]
        assert "kubernetes.io/config.mirror" in meta["annotations"]
        assert meta["ownerReferences"][0]["kind"] == "Node"
        assert spec["hostNetwork"] is True and spec["nodeName"] == NODE
        assert spec["containers"][0]["image"].startswith("pkube/host:")
    table = kubectl(node_cluster, "get", "pods", "-n", "kube-system")
    assert f"kube-apiserver-{NODE}" in table.stdout and "Running" in table.stdout


def test_a_killed_apiserver_comes_back_by_itself(node_cluster):
    before = wait_for(lambda: running_apiserver(node_cluster), 30)
    os.kill(before.pid, signal.SIGKILL)
    after = wait_for(lambda: (r := running_apiserver(node_cluster)) is not None and r.id != before.id and r, 60)
    assert after.pid != before.pid
    wait_for(lambda: readyz(node_cluster), 60)

    def restarted():
        status = kube_system_pods(node_cluster)[f"kube-apiserver-{NODE}"]["status"]
        return status["containerStatuses"][0]["restartCount"] >= 1
    wait_for(restarted, 60)


def cluster_pids(cluster: LocalCluster) -> dict[int, str]:
    """pid -> /proc start time of every process of the cluster: the supervisor, the kubelet,
    and each container's process and shim."""
    pids = {int((cluster.data_dir / "pkube.pid").read_text())}
    rt = runtime_of(cluster)
    for record in [*rt.list(), *rt.list(kind="sandbox")]:
        pids |= {record.pid, record.shim_pid}
    pids |= set(own_processes(cluster))
    return {pid: start_time(pid) for pid in pids if pid and start_time(pid)}


def own_processes(cluster: LocalCluster) -> list[int]:
    """Processes of pkube that name the cluster's directory: its programs under it (shims,
    pause), the supervisor, the kubelet, the proxy, etcd, the scheduler and the controller-manager
    (clients such as `kubectl --kubeconfig DIR/...` started by tests are not the cluster's)."""
    found = []
    for pid in proc_pids():
        command = cmdline(pid)
        if str(cluster.data_dir) in command and (command.startswith(str(cluster.data_dir))
                                                 or any(p in command for p in OWN_PROGRAMS)):
            found.append(pid)
    return found


def proc_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """The start time of a live process (its identity with the pid); "" once it is gone or a
    zombie (dead, waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def pod_cgroup_dirs(cluster: LocalCluster, path: str = POD_CGROUP) -> list[str]:
    """The directories of a cgroup under the runtime's root that exist (one per controller on
    cgroup v1)."""
    return [d for d in runtime_of(cluster).cgroups.open(path).dirs if os.path.isdir(d)]


def own_pod_cgroups(cluster: LocalCluster) -> list[str]:
    """The cgroup directories of the pods the cluster's kubelet runs (kubepods/pod<uid>)."""
    uids = {r.labels[POD_UID] for r in runtime_of(cluster).list(kind="sandbox") if POD_UID in r.labels}
    return [d for uid in uids for d in pod_cgroup_dirs(cluster, f"{POD_CGROUP}/pod{uid}")]


def own_veths(cluster: LocalCluster) -> list[str]:
    """The host ends of the veths of the cluster's pods (on the bridge)."""
    return [veth_name(ipaddress.IPv4Address(r.endpoint["ip"])) for r in runtime_of(cluster).list(kind="sandbox")
            if r.endpoint and r.endpoint.get("ip")]


def other_kubelets() -> list[int]:
    """Kubelets of other clusters on this host (they share the cgroup and the bridge by name)."""
    return [p for p in proc_pids() if "-m pkube.kubelet " in cmdline(p)]


def mounts_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def start_busybox_pod(cluster: LocalCluster, name: str) -> None:
    """A running pod with volumes the kubelet mounts on the host (a Secret's and a memory
    emptyDir's tmpfs): `pkube down` must unmount them too."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}
    with cluster.http() as http:
        assert http.post("/api/v1/namespaces/default/secrets", json=secret).status_code == 201
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                    "volumeMounts": [{"name": "s", "mountPath": "/s"},
                                                     {"name": "m", "mountPath": "/m"}]}],
                    "volumes": [{"name": "s", "secret": {"secretName": name}},
                                {"name": "m", "emptyDir": {"medium": "Memory"}}],
                    "terminationGracePeriodSeconds": 0}}
    with cluster.http() as http:
        created = http.post("/api/v1/namespaces/default/pods", json=pod)
    assert created.status_code == 201, created.text

    def running():
        with cluster.http(timeout=5) as http:
            got = http.get(f"/api/v1/namespaces/default/pods/{name}").json()
        return got.get("status", {}).get("phase") == "Running"
    wait_for(running, 60)


def test_down_leaves_no_process_mount_cgroup_or_veth_and_up_brings_the_node_back(node_cluster):
    start_busybox_pod(node_cluster, "static-cp-down")
    assert len(mounts_under(node_cluster.data_dir / "kubelet" / "pods")) >= 2
    veths = wait_for(lambda: own_veths(node_cluster), 10)
    cgroups = own_pod_cgroups(node_cluster)
    apiserver = wait_for(lambda: running_apiserver(node_cluster), 30)
    pids = cluster_pids(node_cluster)
    assert len(pids) >= 10 and len(cgroups) >= 5
    try:
        down = pkube("down", "--data-dir", str(node_cluster.data_dir))
        assert down.returncode == 0, down.stderr
        survivors = lambda: {p: cmdline(p) for p, started in pids.items() if start_time(p) == started}  # noqa: E731
        with contextlib.suppress(AssertionError):     # a child may still be reaped (a zombie) for an instant
            wait_for(lambda: not survivors(), 10)
        assert survivors() == {}
        assert {p: cmdline(p) for p in own_processes(node_cluster)} == {}
        assert not readyz(node_cluster)
        assert mounts_under(node_cluster.data_dir) == []
        assert [d for d in cgroups if os.path.isdir(d)] == []
        assert [v for v in veths if os.path.exists(f"/sys/class/net/{v}")] == []
        if not other_kubelets():     # else the shared kubepods cgroup and bridge hold their pods
            assert pod_cgroup_dirs(node_cluster) == []
            assert not os.path.exists(f"/sys/class/net/{BRIDGE}")
        assert not (node_cluster.data_dir / "manifests" / "kube-apiserver.yaml").exists()
    finally:
        restarted = start_cluster(node_cluster.data_dir, node_cluster.port, kubelet=True)
        wait_node_ready(restarted, NODE)

    def apiserver_reported_anew():     # the kubelet is back and told the API of the new container
        status = kube_system_pods(node_cluster)[f"kube-apiserver-{NODE}"]["status"]
        reported = status["containerStatuses"][0].get("containerID", "")
        return status["phase"] == "Running" and reported and apiserver.id not in reported
    wait_for(apiserver_reported_anew, 60)
    with node_cluster.http() as http:
        http.delete("/api/v1/namespaces/default/pods/static-cp-down")
