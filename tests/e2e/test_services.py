"""Services that route, on the shared `node_cluster` (a real kubelet, node "e2e-node"): the
proxy (`python -m pkube.proxy`) programs the host's nftables; pods, the host and the node's
addresses reach Deployments through ClusterIPs and NodePorts.

The proxy is started here as a subprocess with the cluster's kubeconfig unless the cluster
runs one already; the module stops it and deletes its table (`python -m pkube.proxy --cleanup`)
even when a test fails, and puts net.ipv4.conf.all.route_localnet back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_kubelet_pods import apply, kubectl
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers and nftables: needs root")

TABLE = "pkube-proxy"
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")

WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, "echo $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
"""


def proxy_processes(cluster) -> list[int]:
    """Pids of `python -m pkube.proxy` processes using this cluster's kubeconfig."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"pkube.proxy" in argv and str(cluster.kubeconfig).encode() in argv:
            pids.append(int(entry.name))
    return pids


def start_proxy(cluster, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pkube.proxy", "--kubeconfig", str(cluster.kubeconfig),
                                 "--node-name", "e2e-node"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def nft_table(chain: str | None = None) -> str:
    """The proxy's table (or one chain of it) as `nft list` prints it; "" if there is none."""
    what = ["chain", "ip", TABLE, chain] if chain else ["table", "ip", TABLE]
    done = subprocess.run(["nft", "list", *what], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture(scope="module")
def services(node_cluster, tmp_path_factory):
    """The proxy running for `node_cluster`, the web Deployment and Services, a client pod;
    yields a dict of what the tests need; everything removed afterwards."""
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    route_localnet = ROUTE_LOCALNET.read_text()
    state = {"proxy": None if proxy_processes(node_cluster) else start_proxy(node_cluster, log), "log": log}
    ours = state["proxy"] is not None
    try:
        apply(node_cluster, WEB)
        kubectl(node_cluster, "rollout", "status", "deployment/web", "--timeout=90s")
        kubectl(node_cluster, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
        svc = json.loads(kubectl(node_cluster, "get", "service", "web", "-o", "json").stdout)
        node = json.loads(kubectl(node_cluster, "get", "node", "e2e-node", "-o", "json").stdout)
        state.update(cluster_ip=svc["spec"]["clusterIP"], node_port=svc["spec"]["ports"][0]["nodePort"],
                     node_ip=next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"),
                     nobody_ip=cluster_ip(node_cluster, "nobody"))
        yield state
    finally:
        kubectl(node_cluster, "delete", "-f", "-", "--wait=false", "--ignore-not-found", input=WEB, check=False)
        if ours:
            state["proxy"].kill()            # the one running now (a test may have restarted it)
            state["proxy"].wait()
            subprocess.run([sys.executable, "-m", "pkube.proxy", "--cleanup"], capture_output=True)
            ROUTE_LOCALNET.write_text(route_localnet)


def cluster_ip(cluster, service: str) -> str:
    return json.loads(kubectl(cluster, "get", "service", service, "-o", "json").stdout)["spec"]["clusterIP"]


def web_pods(cluster) -> dict[str, str]:
    """name -> IP of the web pods that are not being deleted."""
    pods = json.loads(kubectl(cluster, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods if not p["metadata"].get("deletionTimestamp")}


def from_client(cluster, url: str, count: int) -> list[str]:
    """`count` fetches of `url` by busybox wget in the client pod: the answers, or the errors.
    (`timeout`, not `wget -T`: the host's static busybox wget crashes with -T.)"""
    script = f"for i in $(seq {count}); do timeout 5 wget -q -O - {url} 2>&1 || true; done"
    return kubectl(cluster, "exec", "client", "--", "sh", "-c", script).stdout.split("\n")[:-1]


def from_host(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode().strip()


def test_a_clusterip_spreads_requests_from_a_pod_over_every_endpoint(node_cluster, services):
    pods = web_pods(node_cluster)
    assert len(pods) == 3
    answers = wait_for(lambda: (lambda a: a if set(a) == set(pods) else None)(
        from_client(node_cluster, f"http://{services['cluster_ip']}/", 30)), timeout=30)
    assert len(answers) == 30


def test_a_nodeport_answers_on_the_node_address_and_localhost(node_cluster, services):
    pods = web_pods(node_cluster)
    for host in (services["node_ip"], "127.0.0.1"):
        assert wait_for(lambda: from_host(f"http://{host}:{services['node_port']}/")) in pods
    assert from_host(f"http://{services['cluster_ip']}/") in pods          # the ClusterIP from the host


def test_a_service_without_endpoints_refuses_at_once(node_cluster, services):
    answers = from_client(node_cluster, f"http://{services['nobody_ip']}/", 3)
    assert all("refused" in a for a in answers), answers


def test_a_deleted_pod_leaves_the_rotation(node_cluster, services):
    pods = web_pods(node_cluster)
    victim, victim_ip = sorted(pods.items())[0]
    deleted = time.monotonic()
    kubectl(node_cluster, "delete", "pod", victim, "--wait=false")
    wait_for(lambda: victim_ip not in nft_table("service-default/web/tcp/http"), timeout=30)
    print(f"pod {victim} left the proxy's table {time.monotonic() - deleted:.2f} s after kubectl delete returned")
    # It still runs (30 s grace; httpd ignores SIGTERM as PID 1), so only the rules keep it out.
    assert urllib.request.urlopen(f"http://{victim_ip}:8080/", timeout=5).read().decode().strip() == victim
    answers = from_client(node_cluster, f"http://{services['cluster_ip']}/", 30)
    assert victim not in answers and len(answers) == 30 and all(a in web_pods(node_cluster) for a in answers)


def test_a_proxy_killed_and_restarted_rebuilds_without_stale_rules(node_cluster, services):
    """SIGKILL of the proxy; Services change while it is dead; its successor (pkube up's
    supervisor restarts the cluster's own, this module starts its own again) leaves no stale rule."""
    killed = proxy_processes(node_cluster)
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    if services["proxy"] is not None:
        services["proxy"].wait()
    kubectl(node_cluster, "delete", "service", "nobody")
    kubectl(node_cluster, "create", "service", "clusterip", "after-restart", "--tcp=81:8080")
    new_ip = cluster_ip(node_cluster, "after-restart")
    if services["proxy"] is not None:
        services["proxy"] = start_proxy(node_cluster, services["log"])
    wait_for(lambda: [p for p in proxy_processes(node_cluster) if p not in killed], timeout=60)
    table = wait_for(lambda: (lambda t: t if f"{new_ip} . tcp . 81" in t else None)(nft_table()), timeout=30)
    assert f"{services['nobody_ip']} . tcp . 80 " not in table   # deleted while the proxy was dead: no stale rule
    assert f"{services['cluster_ip']} . tcp . 80" in table
    kubectl(node_cluster, "delete", "service", "after-restart")
