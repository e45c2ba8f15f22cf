"""A three-node cluster on this machine (`pkube up --nodes 3`: two nodes in network namespaces,
joined with `pkube join` and a bootstrap token, as VMs join): pods spread over the nodes,
Services answer across nodes (ClusterIP, DNS, NodePort on every node, headless), a DaemonSet
reaches a node joined later, `kubectl drain` waits on a PodDisruptionBudget until a replacement
is Ready on another node, a stopped kubelet's pods are evicted and replaced elsewhere, an
expired token is refused, and `pkube down` leaves nothing behind. One cluster for the module."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pkube.cluster.netnodes import BRIDGE, NFT_TABLE, NetNode, add_namespace, remove_namespace
from tests.e2e.conftest import LocalCluster, multinode_cluster, pkube, wait_node_ready
from tests.e2e.test_kubelet_pods import apply, kubectl
from tests.helpers.waiting import wait_for

HOST = "mn"
NODES = {HOST: "10.200.0.1", f"{HOST}-1": "10.200.0.2", f"{HOST}-2": "10.200.0.3"}

WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"""


NODE_MONITOR_GRACE_SECONDS = 25     # --kube-controller-manager-arg of the fixture (the default is 50)


@pytest.fixture(scope="module")
def multinode(tmp_path_factory):
    """`pkube up -d --nodes 3` under the host's kubelet slot, the node lifecycle controller's
    grace period cut to NODE_MONITOR_GRACE_SECONDS (k3s's --kube-controller-manager-arg: the
    tests that stop a node wait it out); always brought down."""
    with multinode_cluster(tmp_path_factory.mktemp("pkube-multinode"), list(NODES), "--kube-controller-manager-arg",
                           f"node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}") as cluster:
        yield cluster


def pods(cluster, selector: str) -> list[dict]:
    return json.loads(kubectl(cluster, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]


def running(pod: dict) -> bool:
    ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and ready.get("Ready") == "True" \
        and not pod["metadata"].get("deletionTimestamp")


def running_pods(cluster, selector: str, count: int, timeout: float = 90) -> list[dict]:
    """Once `count` pods of `selector` run and are ready, those pods."""
    return wait_for(lambda: (lambda found: found if len(found) == count else None)(
        [p for p in pods(cluster, selector) if running(p)]), timeout)


def in_pod(cluster, pod: str, script: str, timeout: float = 120) -> str:
    return kubectl(cluster, "exec", pod, "--", "sh", "-c", script, timeout=timeout).stdout


def test_three_nodes_are_ready_each_at_its_own_address(multinode):
    nodes = json.loads(kubectl(multinode, "get", "nodes", "-o", "json").stdout)["items"]
    addresses = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"]
                                             if a["type"] == "InternalIP") for n in nodes}
    assert addresses == NODES
    assert len({n["spec"]["podCIDR"] for n in nodes}) == 3


def test_a_deployment_spreads_and_its_service_answers_from_every_node(multinode):
    apply(multinode, WEB)
    web = running_pods(multinode, "app=web", 6)
    assert {p["spec"]["nodeName"] for p in web} == set(NODES)
    names = {p["metadata"]["name"] for p in web}
    client = next(p["metadata"]["name"] for p in web if p["spec"]["nodeName"] == f"{HOST}-1")
    service = json.loads(kubectl(multinode, "get", "svc", "web", "-o", "json").stdout)
    for target in (service["spec"]["clusterIP"], "web.default.svc.cluster.local"):
        answers = in_pod(multinode, client, f"for i in $(seq 60); do wget -q -O - http://{target}/; done")
        assert set(answers.split()) == names, target
    node_port = service["spec"]["ports"][0]["nodePort"]
    for address in NODES.values():
        with urllib.request.urlopen(f"http://{address}:{node_port}/", timeout=10) as answer:
            assert answer.read().decode().strip() in names


def test_a_headless_service_resolves_to_every_pod(multinode):
    web = running_pods(multinode, "app=web", 6)
    client = next(p["metadata"]["name"] for p in web if p["spec"]["nodeName"] == f"{HOST}-1")
    output = in_pod(multinode, client, "nslookup web-headless.default.svc.cluster.local. || true")
    answers = output.split("\n\n", 1)[-1]
    found = {line.split()[-1] for line in answers.splitlines() if line.startswith("Address")}
    assert found == {p["status"]["podIP"] for p in web}


DAEMONSET = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: busybox, command: [sleep, "3600"]}
"""


def extra_node(cluster: LocalCluster) -> NetNode:
    """A fourth machine on the nodes' bridge, made as `pkube up --nodes` makes its nodes."""
    return NetNode(3, f"{HOST}-3", cluster.data_dir / "extra" / f"{HOST}-3")


def join_in(cluster: LocalCluster, node: NetNode, token: str) -> subprocess.CompletedProcess:
    """`pkube join -d` run inside `node`'s network namespace, as `pkube up --nodes` runs it."""
    return subprocess.run(["nsenter", f"--net={node.netns_path}", sys.executable, "-m", "pkube.cluster", "join",
                           f"https://{NODES[HOST]}:{cluster.port}", "--token", token, "-d",
                           "--data-dir", str(node.data_dir), "--node-name", node.name,
                           "--cgroup-root", node.cgroup_root], capture_output=True, text=True, timeout=120)


def csr_names(cluster) -> set[str]:
    return {c["metadata"]["name"] for c in json.loads(kubectl(cluster, "get", "csr", "-o", "json").stdout)["items"]}


def test_a_daemonset_runs_on_every_node_and_on_a_node_joined_later(multinode, tmp_path):
    apply(multinode, DAEMONSET)
    assert {p["spec"]["nodeName"] for p in running_pods(multinode, "app=everywhere", 3)} == set(NODES)
    node = extra_node(multinode)
    token = pkube("token", "create", "--data-dir", str(multinode.data_dir), "--ttl", "10m").stdout.strip()
    try:
        add_namespace(node)
        done = join_in(multinode, node, token)
        assert done.returncode == 0, done.stderr + done.stdout
        wait_node_ready(multinode, node.name, timeout=60)
        spread = {p["spec"]["nodeName"] for p in running_pods(multinode, "app=everywhere", 4)}
        assert spread == {*NODES, node.name}

        other = tmp_path / "another-machine"
        taken = pkube("join", f"https://{NODES[HOST]}:{multinode.port}", "--token", token,
                      "--data-dir", str(other), "--node-name", node.name)
        assert taken.returncode != 0 and f"node {node.name} already exists in the cluster" in taken.stderr, \
            taken.stderr
        assert not other.exists()

        requests = csr_names(multinode)
        assert pkube("down", "--data-dir", str(node.data_dir)).returncode == 0
        again = join_in(multinode, node, token)
        assert again.returncode == 0 and "using its credentials" in again.stderr, again.stderr + again.stdout
        assert csr_names(multinode) == requests
    finally:
        kubectl(multinode, "delete", "daemonset", "everywhere", "--wait=false", check=False)
        pkube("down", "--data-dir", str(node.data_dir), timeout=120)
        remove_namespace(node, print)
        kubectl(multinode, "delete", "node", node.name, "--wait=false", check=False)


def test_a_node_joining_with_an_expired_token_is_refused_and_writes_nothing(multinode, tmp_path):
    created = pkube("token", "create", "--data-dir", str(multinode.data_dir), "--ttl", "1s")
    assert created.returncode == 0, created.stderr
    time.sleep(1.5)   # the token's TTL: what is asserted is the refusal, not a time
    data_dir = tmp_path / "late-node"
    done = pkube("join", f"https://{NODES[HOST]}:{multinode.port}", "--token", created.stdout.strip(),
                 "--data-dir", str(data_dir), "--node-name", "late-node")
    assert done.returncode != 0
    assert "refused the token" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not data_dir.exists()
    assert kubectl(multinode, "get", "node", "late-node", check=False).returncode != 0


TOLERANT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: tolerant}
spec:
  replicas: 3
  selector: {matchLabels: {app: tolerant}}
  template:
    metadata: {labels: {app: tolerant}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - {name: c, image: busybox, command: [sleep, "3600"]}
"""


def kubelet_pid(node: str) -> int:
    """The pid of the kubelet of `node` (found by its command line)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"pkube.kubelet" in argv and b"--node-name" in argv and argv[argv.index(b"--node-name") + 1] == node.encode():
            return int(entry.name)
    raise AssertionError(f"no kubelet of node {node}")


def test_a_stopped_kubelets_pods_are_evicted_and_run_elsewhere(multinode):
    apply(multinode, TOLERANT)
    placed = {p["spec"]["nodeName"] for p in running_pods(multinode, "app=tolerant", 3)}
    victim = next((n for n in (f"{HOST}-2", f"{HOST}-1") if n in placed), None)
    assert victim, f"the scheduler spread no pod to the namespaced nodes: {placed}"
    pid = kubelet_pid(victim)
    os.kill(pid, signal.SIGSTOP)
    try:
        def replaced():
            live = [p for p in pods(multinode, "app=tolerant") if running(p)]
            return len(live) == 3 and victim not in {p["spec"]["nodeName"] for p in live}
        wait_for(replaced, timeout=150)
    finally:
        os.kill(pid, signal.SIGCONT)
        kubectl(multinode, "delete", "deployment", "tolerant", "--wait=false", check=False)


GUARDED = """apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, "3600"]
        readinessProbe: {exec: {command: ["true"]}, initialDelaySeconds: 3, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: guarded}}
"""


def test_kubectl_drain_waits_on_the_budget_until_a_replacement_is_ready_elsewhere(multinode):
    drained = f"{HOST}-1"
    others = [n for n in NODES if n != drained]
    for node in others:                      # both pods land on the node to drain
        kubectl(multinode, "cordon", node)
    try:
        apply(multinode, GUARDED)
        assert {p["spec"]["nodeName"] for p in running_pods(multinode, "app=guarded", 2)} == {drained}
    finally:
        for node in others:
            kubectl(multinode, "uncordon", node)
    try:
        done = kubectl(multinode, "drain", drained, "--ignore-daemonsets", "--timeout=150s", timeout=170)
        # the second eviction was refused (429) until the first pod's replacement was Ready
        assert "Cannot evict pod as it would violate the pod's disruption budget." in done.stderr, done.stderr
        assert done.stdout.splitlines()[-1] == f"node/{drained} drained"
        placed = running_pods(multinode, "app=guarded", 2)
        assert drained not in {p["spec"]["nodeName"] for p in placed}
    finally:
        kubectl(multinode, "uncordon", drained, check=False)
        kubectl(multinode, "delete", "deployment", "guarded", "--wait=false", check=False)
        kubectl(multinode, "delete", "pdb", "guarded", check=False)


VANISHING_TOLERATION_SECONDS = 2

VANISHING = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: vanishing}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: vanishing}}}}
  template:
    metadata: {{labels: {{app: vanishing}}}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,
         tolerationSeconds: {VANISHING_TOLERATION_SECONDS}}}
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute,
         tolerationSeconds: {VANISHING_TOLERATION_SECONDS}}}
      containers:
      - {{name: c, image: busybox, command: [sleep, "3600"]}}
"""


def processes_in(netns: os.stat_result) -> list[int]:
    """The pids whose network namespace is `netns` (the stat of its nsfs file)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ns = os.stat(entry / "ns" / "net")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and (ns.st_dev, ns.st_ino) == (netns.st_dev, netns.st_ino):
            found.append(int(entry.name))
    return found


def vanish(node: NetNode) -> None:
    """Node `node` gone as a machine goes: its name unbound (`ip netns delete`, so its join,
    restarted by `pkube up`, cannot enter it again), then every process in its network
    namespace (its join, kubelet and proxy, and anything they started meanwhile) killed -9
    until none is left; the namespace, its links and the host's veth end go with the last of
    them. Its pods' processes, in their own namespaces, stay for `pkube down` to remove."""
    netns = os.stat(node.netns_path)
    assert processes_in(netns), f"no process in {node.netns}"
    subprocess.run(["ip", "netns", "delete", node.netns], check=True, timeout=30)
    while victims := processes_in(netns):
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def node_ready_status(cluster, name: str) -> str:
    node = json.loads(kubectl(cluster, "get", "node", name, "-o", "json").stdout)
    return next((c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"), "")


def test_a_node_gone_with_its_network_namespace_has_its_pods_replaced_elsewhere(multinode):
    for name in NODES:           # a node of an earlier test may still be coming back
        wait_node_ready(multinode, name, timeout=90)
    apply(multinode, VANISHING)
    placed = {p["spec"]["nodeName"] for p in running_pods(multinode, "app=vanishing", 3)}
    victim = next((n for n in (f"{HOST}-2", f"{HOST}-1") if n in placed), None)
    assert victim, f"the scheduler spread no pod to the namespaced nodes: {placed}"
    node = NetNode(int(victim.rsplit("-", 1)[1]), victim, multinode.data_dir / "nodes" / victim)
    promised = VANISHING_TOLERATION_SECONDS + NODE_MONITOR_GRACE_SECONDS + 60
    try:
        vanish(node)
        deadline = time.monotonic() + promised
        wait_for(lambda: node_ready_status(multinode, victim) == "Unknown", timeout=promised)

        def replaced():
            every = pods(multinode, "app=vanishing")
            live = [p for p in every if running(p)]
            left = [p for p in every if p["spec"].get("nodeName") == victim]
            evicted = all(p["metadata"].get("deletionTimestamp") for p in left)
            return len(live) == 3 and victim not in {p["spec"]["nodeName"] for p in live} and evicted
        wait_for(replaced, timeout=max(1.0, deadline - time.monotonic()))
        wait_for(lambda: not os.path.exists(f"/sys/class/net/{node.host_ifname}"), timeout=10)
    finally:
        kubectl(multinode, "delete", "deployment", "vanishing", "--wait=false", check=False)


def leftovers(data_dir: Path) -> list[str]:
    """What a multi-node cluster could leave on the host: namespaces, links, the nftables
    table, mounts under its data dir, cgroups of its nodes, processes of its data dir."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith("pkube-node")] \
        if os.path.isdir("/run/netns") else []
    found += [f"link {link}" for link in os.listdir("/sys/class/net") if link == BRIDGE or link.startswith("pkn")]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft table {NFT_TABLE}"] if f"ip {NFT_TABLE}\n" in tables + "\n" else []
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts if line.split()[4].startswith(str(data_dir))]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/kubepods-node*")]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("kubepods-node*")]
    for entry in Path("/proc").iterdir():
        try:
            if str(data_dir).encode() in (entry / "cmdline").read_bytes():
                found.append(f"process {entry.name}")
        except OSError:
            continue
    return found


def test_pkube_down_leaves_nothing_behind(multinode):
    done = pkube("down", "--data-dir", str(multinode.data_dir), timeout=180)
    assert done.returncode == 0, done.stderr
    try:
        wait_for(lambda: not leftovers(multinode.data_dir), timeout=10)
    except AssertionError:
        pytest.fail(f"left behind: {leftovers(multinode.data_dir)}")
