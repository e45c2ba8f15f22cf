"""The cluster DNS from inside pods on a `pkube up` node: Service names (also by the search path),
headless Services as their pods' addresses, SRV for named ports, pod names, NXDOMAIN,
and a resolv.conf as Kubernetes writes it."""

from __future__ import annotations

import json

from tests.e2e.test_kubelet_pods import apply, kubectl, pod_manifest, wait_running
from tests.helpers.waiting import wait_for

WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: dnsweb}
spec:
  replicas: 2
  selector: {matchLabels: {app: dnsweb}}
  template:
    metadata: {labels: {app: dnsweb}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox
        command: [sh, -c, "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: dnsweb}
spec:
  selector: {app: dnsweb}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: dnsweb-headless}
spec:
  clusterIP: None
  selector: {app: dnsweb}
  ports: [{name: http, port: 8080}]
"""


def lookup(cluster, name: str, kind: str = "A") -> tuple[int, str]:
    done = kubectl(cluster, "exec", "dns-client", "--", "nslookup", f"-type={kind}", name, check=False)
    return done.returncode, done.stdout + done.stderr


def addresses(output: str) -> set[str]:
    """The answer addresses of busybox nslookup (after the server's own lines)."""
    answers = output.split("\n\n", 1)[-1]
    return {line.split()[-1] for line in answers.splitlines() if line.startswith("Address")}


def test_services_pods_and_absent_names_resolve_from_a_pod(node_cluster):
    apply(node_cluster, WEB)
    apply(node_cluster, pod_manifest("dns-client", """  - name: c
    image: busybox
    command: [sleep, "3600"]
"""))
    try:
        kubectl(node_cluster, "rollout", "status", "deployment/dnsweb", "--timeout=60s")
        client = wait_running(node_cluster, "dns-client")
        resolv = kubectl(node_cluster, "exec", "dns-client", "--", "cat", "/etc/resolv.conf").stdout
        assert "nameserver 10.96.0.10" in resolv
        assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
        assert "options ndots:5" in resolv

        service_ip = json.loads(kubectl(node_cluster, "get", "svc", "dnsweb", "-o", "json").stdout)["spec"]["clusterIP"]
        pods = json.loads(kubectl(node_cluster, "get", "pods", "-l", "app=dnsweb", "-o", "json").stdout)["items"]
        pod_ips = {p["status"]["podIP"] for p in pods}

        code, out = lookup(node_cluster, "dnsweb.default.svc.cluster.local")
        assert code == 0 and addresses(out) == {service_ip}, out
        wait_for(lambda: addresses(lookup(node_cluster, "dnsweb-headless.default.svc.cluster.local")[1]) == pod_ips)
        code, out = lookup(node_cluster, "_http._tcp.dnsweb.default.svc.cluster.local", "SRV")
        assert code == 0 and "80 dnsweb.default.svc.cluster.local" in out, out
        dashed = client["status"]["podIP"].replace(".", "-")
        code, out = lookup(node_cluster, f"{dashed}.default.pod.cluster.local")
        assert addresses(out) == {client["status"]["podIP"]}, out
        code, out = lookup(node_cluster, "nope.default.svc.cluster.local")
        assert code != 0 and "NXDOMAIN" in out, out

        # the short name through the pod's search path, by busybox's own resolver and by
        # getaddrinfo as an application uses it (no wget -T: Debian's busybox crashes on it)
        _, out = lookup(node_cluster, "dnsweb")       # busybox asks every search domain: exit 1
        assert "Name:\tdnsweb.default.svc.cluster.local" in out and addresses(out) == {service_ip}, out
        body = wait_for(lambda: kubectl(node_cluster, "exec", "dns-client", "--", "wget", "-qO-",
                                        "http://dnsweb/index.html", check=False, timeout=20).stdout)
        assert body.startswith("hello from dnsweb-")
    finally:
        kubectl(node_cluster, "delete", "-f", "-", "--wait=false", input=WEB, check=False)
        kubectl(node_cluster, "delete", "pod", "dns-client", "--wait=false", check=False)
