"""From inside a pod, etcd cannot be reached at all (it listens on the node's loopback, which a
pod's network namespace does not share), while the node itself can — its kubelet port, which
asks for credentials (tests/e2e/test_authorization.py)."""

from __future__ import annotations

import json

from tests.e2e.test_kubelet_pods import apply, kubectl, pod_manifest, wait_running


def connects(cluster, pod: str, host: str, port: int) -> bool:
    done = kubectl(cluster, "exec", pod, "--", "sh", "-c", f"echo | nc -w 2 {host} {port}", check=False, timeout=30)
    return done.returncode == 0


def test_a_pod_reaches_the_node_but_not_etcd(node_cluster):
    etcd_port = int((node_cluster.data_dir / "etcd.ports").read_text().split()[0])
    apply(node_cluster, pod_manifest("prober", """  - name: c
    image: busybox
    command: [sleep, "3600"]
"""))
    try:
        pod = wait_running(node_cluster, "prober")
        gateway = kubectl(node_cluster, "exec", "prober", "--", "ip", "route").stdout.split("default via ")[1].split()[0]
        node = json.loads(kubectl(node_cluster, "get", "node", "e2e-node", "-o", "json").stdout)
        node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        kubelet_port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        assert connects(node_cluster, "prober", node_ip, kubelet_port)   # the node is reachable: this check can fail
        service_ip = json.loads(kubectl(node_cluster, "get", "svc", "kubernetes", "-o", "json").stdout)["spec"]["clusterIP"]
        assert connects(node_cluster, "prober", service_ip, 443)        # in-cluster clients reach the apiserver
        for host in (gateway, node_ip, pod["status"]["hostIP"], "127.0.0.1"):
            assert not connects(node_cluster, "prober", host, etcd_port), f"etcd reachable at {host}:{etcd_port}"
    finally:
        kubectl(node_cluster, "delete", "pod", "prober", "--wait=false", check=False)
