"""A highly available control plane on this machine (`pkube up --nodes 3 --control-plane 3`:
the host and two network-namespace nodes joined with `pkube join --control-plane`), one
cluster for the module: three etcd members, three apiservers in the `kubernetes` endpoints;
the real kubectl, with the one URL of DIR/admin.kubeconfig (the host's local load balancer),
keeps working when the apiserver it used dies, and a Deployment still rolls out; the dead
apiserver leaves the endpoints; a standby controller-manager takes over from a killed leader;
writes go on with one etcd member killed; `pkube down` of one member removes it from etcd
first; `pkube down` leaves no member data."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalCluster, multinode_cluster, pkube
from tests.e2e.test_kubelet_pods import kubectl
from tests.helpers.waiting import wait_for

HOST = "ha"
MEMBERS = {HOST: "10.200.0.1", f"{HOST}-1": "10.200.0.2", f"{HOST}-2": "10.200.0.3"}


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pkube-ha")
    with multinode_cluster(data_dir, list(MEMBERS), "--control-plane", "3") as cluster:
        yield cluster
    assert not (data_dir / "etcd-member").exists()
    assert not any((data_dir / "nodes" / name / "etcd-member").exists() for name in MEMBERS)


def pids_of(*words: str) -> list[int]:
    """Processes whose command line holds every one of `words` (as whole arguments)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(w.encode() in argv for w in words):
            found.append(int(entry.name))
    return found


def endpoint_addresses(cluster: LocalCluster) -> set[str]:
    """The kubernetes Service's endpoint addresses (none while the balancer moves)."""
    import httpx
    try:
        with cluster.http(timeout=5) as http:
            answer = http.get("/api/v1/namespaces/default/endpoints/kubernetes")
    except httpx.TransportError:
        return set()
    if answer.status_code != 200:
        return set()
    return {a["ip"] for subset in answer.json().get("subsets") or [] for a in subset.get("addresses") or []}


def kubectl_retrying(cluster: LocalCluster, *args: str) -> str:
    """A kubectl command that may fail for a moment while the balancer moves (one connection
    reset); it must succeed within a few tries (a create whose first try got through but whose
    answer was lost finds its object: that counts)."""
    results = []

    def ran() -> bool:
        results.append(kubectl(cluster, *args, check=False, timeout=30))
        return results[-1].returncode == 0 or (len(results) > 1 and "already exists" in results[-1].stderr)
    wait_for(ran, timeout=30)
    return results[-1].stdout


def lease_holder(cluster: LocalCluster, name: str) -> str:
    return json.loads(kubectl_retrying(cluster, "get", "lease", "-n", "kube-system", name, "-o", "json")
                      )["spec"].get("holderIdentity", "")


def test_three_etcd_members_and_three_apiservers_in_the_kubernetes_endpoints(ha):
    listed = pkube("etcd", "member", "list", "--data-dir", str(ha.data_dir))
    assert listed.returncode == 0, listed.stderr
    for name, address in MEMBERS.items():
        assert any(line.split()[0] == name and f"https://{address}:2379" in line
                   for line in listed.stdout.splitlines()), listed.stdout
    wait_for(lambda: endpoint_addresses(ha) == set(MEMBERS.values()), timeout=60)
    nodes = kubectl(ha, "get", "nodes", "-o", "name").stdout.split()
    assert sorted(nodes) == sorted(f"node/{name}" for name in MEMBERS)


def test_the_real_kubectl_survives_the_death_of_the_apiserver_it_used(ha):
    """The host's balancer sticks to the host's apiserver: kill -9 it while its supervisor
    (pkube up) is frozen, so that it stays dead; then let the supervisor restart it: the
    balancer moves back to it."""
    wait_for(lambda: endpoint_addresses(ha) == set(MEMBERS.values()), timeout=60)
    supervisor = int((ha.data_dir / "pkube.pid").read_text())
    victim = pids_of("pkube.apiserver", "--advertise-address", MEMBERS[HOST])
    assert len(victim) == 1, victim
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(victim[0], signal.SIGKILL)
        kubectl_retrying(ha, "get", "nodes")
        kubectl_retrying(ha, "create", "deployment", "survivor", "--image", "busybox", "--replicas", "2",
                         "--", "sleep", "3600")
        kubectl_retrying(ha, "rollout", "status", "deployment/survivor", "--timeout", "90s")
        wait_for(lambda: endpoint_addresses(ha) == {MEMBERS[f"{HOST}-1"], MEMBERS[f"{HOST}-2"]}, timeout=60)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: endpoint_addresses(ha) == set(MEMBERS.values()), timeout=60)
    balancer_log = ha.data_dir / "logs" / "loadbalancer.log"
    moved_back = re.compile(rf"apiserver {re.escape(MEMBERS[HOST])}:\d+ is back .*moving clients back")
    wait_for(lambda: moved_back.search(balancer_log.read_text()), timeout=60)
    kubectl(ha, "delete", "deployment", "survivor")


def member_dir(cluster: LocalCluster, name: str) -> Path:
    return cluster.data_dir if name == HOST else cluster.data_dir / "nodes" / name


def test_a_standby_controller_manager_takes_over_from_a_killed_leader(ha):
    """The leader is the member whose controller-manager logged the Lease holder's identity."""
    holder = lease_holder(ha, "kube-controller-manager")
    leaders = [name for name in MEMBERS
               if f"{holder}: became leader" in (member_dir(ha, name) / "logs" / "controllers.log").read_text()]
    assert len(leaders) == 1, (holder, leaders)
    kubeconfig = member_dir(ha, leaders[0]) / "controller-manager.kubeconfig"
    victim = pids_of("pkube.controllers", "--kubeconfig", str(kubeconfig))
    assert len(victim) == 1, (holder, victim)
    os.kill(victim[0], signal.SIGKILL)
    wait_for(lambda: lease_holder(ha, "kube-controller-manager") not in ("", holder), timeout=60)
    kubectl_retrying(ha, "create", "deployment", "after-leader", "--image", "busybox", "--", "sleep", "3600")
    kubectl_retrying(ha, "rollout", "status", "deployment/after-leader", "--timeout", "90s")
    kubectl(ha, "delete", "deployment", "after-leader")


def test_writes_go_on_with_one_etcd_member_killed(ha):
    victim = pids_of("etcd", "--name", f"{HOST}-2")
    assert len(victim) == 1, victim
    os.kill(victim[0], signal.SIGKILL)
    for i in range(5):
        kubectl_retrying(ha, "create", "configmap", f"written-{i}", f"--from-literal=i={i}")
    assert kubectl(ha, "get", "configmap", "written-4", "-o", "jsonpath={.data.i}").stdout == "4"


def etcd_member_names(cluster: LocalCluster) -> set[str]:
    listed = pkube("etcd", "member", "list", "--data-dir", str(cluster.data_dir))
    assert listed.returncode == 0, listed.stderr
    return {line.split()[0] for line in listed.stdout.splitlines()[1:]}


def test_pkube_down_of_one_member_removes_it_from_etcd_first(ha):
    """Last (it takes a member away): the quorum shrinks with the member, so the two left are
    the whole cluster, and writes go on."""
    gone = f"{HOST}-2"
    done = pkube("down", "--data-dir", str(member_dir(ha, gone)), timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"member {gone} (" in done.stderr and "removed from etcd" in done.stderr, done.stderr
    assert etcd_member_names(ha) == {HOST, f"{HOST}-1"}
    assert not (member_dir(ha, gone) / "etcd-member").exists()
    kubectl_retrying(ha, "create", "configmap", "after-leave", "--from-literal=left=1")
    assert kubectl(ha, "get", "configmap", "after-leave", "-o", "jsonpath={.data.left}").stdout == "1"
