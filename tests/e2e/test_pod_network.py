"""The vxlan pod network on a real cluster (`pkube up --nodes 2 --pod-network vxlan`: the second
node joined with `pkube join` in a network namespace): each node publishes its VTEP MAC on its
Node with its own credentials, a pod on one node reaches a pod on the other by pod IP and is
seen with its own address, and `pkube down` leaves no tunnel or route behind. (host-gw, the
default, is what tests/e2e/test_multinode.py runs.)"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest

from pkube.cluster.etcd import free_port
from pkube.proxy import podroutes
from tests.e2e.conftest import LocalCluster, kubelet_host, pkube, wait_node_ready
from tests.e2e.test_kubelet_pods import apply, kubectl
from tests.helpers.waiting import wait_for

HOST = "pv"
NODES = {HOST: "10.200.0.1", f"{HOST}-1": "10.200.0.2"}

PODS = f"""apiVersion: v1
kind: Pod
metadata: {{name: server}}
spec:
  nodeName: {HOST}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -vv -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {HOST}-1
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: busybox, command: [sleep, "3600"]}}
"""


@pytest.fixture(scope="module")
def vxlan_cluster(tmp_path_factory):
    """`pkube up -d --nodes 2 --pod-network vxlan` under the host's kubelet slot; always brought down."""
    data_dir = tmp_path_factory.mktemp("pkube-vxlan")
    port = free_port()
    with kubelet_host():
        try:
            done = pkube("up", "-d", "--data-dir", str(data_dir), "--port", str(port), "--node-name", HOST,
                         "--kubelet-port", str(free_port()), "--nodes", "2", "--pod-network", "vxlan", timeout=300)
            assert done.returncode == 0, done.stderr + done.stdout
            cluster = LocalCluster(data_dir, port)
            for name in NODES:
                wait_node_ready(cluster, name, timeout=90)
            yield cluster
        finally:
            pkube("down", "--data-dir", str(data_dir), timeout=180)


def nodes(cluster) -> dict[str, dict]:
    items = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n for n in items}


def pod(cluster, name: str) -> dict:
    return json.loads(kubectl(cluster, "get", "pod", name, "-o", "json").stdout)


def test_pods_on_two_nodes_reach_each_other_through_the_tunnel_with_their_own_addresses(vxlan_cluster):
    published = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        {name: podroutes.vtep_mac(n) for name, n in nodes(vxlan_cluster).items() if podroutes.vtep_mac(n)}), 60)
    assert published == {name: podroutes.vxlan_mac(ipaddress.IPv4Address(ip))
                         for name, ip in NODES.items()}
    remote_cidr = nodes(vxlan_cluster)[f"{HOST}-1"]["spec"]["podCIDR"]
    route = f"{remote_cidr} via {remote_cidr.split('/')[0]} dev pkube-vxlan proto 112 onlink"
    wait_for(lambda: route in {" ".join(line.split()) for line in
                               subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.splitlines()}, 30)

    apply(vxlan_cluster, PODS)
    running = lambda name: pod(vxlan_cluster, name)["status"].get("phase") == "Running"  # noqa: E731
    wait_for(lambda: running("server") and running("client"), 120)
    server_ip, client_ip = pod(vxlan_cluster, "server")["status"]["podIP"], pod(vxlan_cluster, "client")["status"]["podIP"]
    answer = kubectl(vxlan_cluster, "exec", "client", "--", "wget", "-q", "-O", "-", f"http://{server_ip}:8080/")
    assert answer.stdout.strip() == "hello"
    logs = wait_for(lambda: kubectl(vxlan_cluster, "logs", "server").stdout, 30)
    assert re.search(rf"\b{re.escape(client_ip)}\]?:\d+: url:/", logs), (client_ip, logs)   # no NAT


def test_pkube_down_leaves_no_tunnel_and_no_route(vxlan_cluster):
    assert pkube("down", "--data-dir", str(vxlan_cluster.data_dir), timeout=180).returncode == 0
    assert subprocess.run(["ip", "link", "show", "pkube-vxlan"], capture_output=True).returncode != 0
    assert subprocess.run(["ip", "route", "show", "proto", "0x70"], capture_output=True, text=True).stdout == ""
