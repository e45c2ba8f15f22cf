"""Authorization on a `pkube up` cluster (Node,RBAC): every component runs with its own
identity and bootstrap role and still does its work; a `view` user reads pods but not
Secrets (the real kubectl shows Kubernetes' message); `kubectl auth can-i` and `whoami`;
the kubelet's identity reads only the Secrets of its own pods and writes only its own Node."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pkube.cluster import certs, pki
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private
from tests.helpers.waiting import wait_for

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


def user_kubeconfig(cluster, user: str, groups: tuple[str, ...] = ()) -> Path:
    """A kubeconfig for `user` (a client certificate the cluster CA signs, CN user, O groups)."""
    directory = certs.pki_dir(cluster.data_dir)
    name = f"test-user-{user.replace(':', '-')}"
    pki.CertificateAuthority.load(directory).issue(pki.CertSpec(name, user, groups))
    config = admin_kubeconfig(cluster.server, ca_data=base64.b64encode((directory / "ca.crt").read_bytes()).decode(),
                              client_cert=(directory / f"{name}.crt").read_bytes(),
                              client_key=(directory / f"{name}.key").read_bytes())
    path = cluster.data_dir / f"{name}.kubeconfig"
    write_private(path, config)
    return path


def kubectl(kubeconfig: Path, *args, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL or str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig),
                           *args], capture_output=True, text=True, input=input, timeout=90)


def test_components_do_their_work_with_their_own_rights(node_cluster):
    """The scheduler, controller manager and kubelet are not system:masters: a Deployment
    still gets its pods scheduled and running."""
    with node_cluster.http() as admin:
        roles = admin.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-controller-manager")
        assert roles.status_code == 200
        admin.post("/api/v1/namespaces", json={"metadata": {"name": "authz-e2e"}})
    manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: authz-e2e}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""
    done = kubectl(node_cluster.kubeconfig, "apply", "-f", "-", input=manifest)
    assert done.returncode == 0, done.stderr
    rolled = kubectl(node_cluster.kubeconfig, "-n", "authz-e2e", "rollout", "status", "deploy/web", "--timeout=90s")
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    kubectl(node_cluster.kubeconfig, "delete", "namespace", "authz-e2e", "--wait=false")


def test_a_view_user_reads_pods_but_not_secrets_and_can_i_says_so(node_cluster):
    alice = user_kubeconfig(node_cluster, "alice")
    binding = kubectl(node_cluster.kubeconfig, "create", "rolebinding", "alice-view", "--clusterrole=view",
                      "--user=alice", "-n", "default")
    assert binding.returncode == 0, binding.stderr
    assert wait_for(lambda: kubectl(alice, "get", "pods").returncode == 0, 10)
    secrets = kubectl(alice, "get", "secrets")
    assert secrets.returncode == 1
    assert ('Error from server (Forbidden): secrets is forbidden: User "alice" cannot list resource "secrets" '
            'in API group "" in the namespace "default"') in secrets.stderr
    assert kubectl(alice, "auth", "can-i", "list", "pods").stdout.strip() == "yes"
    assert kubectl(alice, "auth", "can-i", "get", "secrets").stdout.strip() == "no"
    assert kubectl(alice, "auth", "can-i", "create", "deployments").stdout.strip() == "no"
    whoami = kubectl(alice, "auth", "whoami")
    assert whoami.returncode == 0 and "alice" in whoami.stdout and "system:authenticated" in whoami.stdout


def test_the_node_reads_only_its_own_pods_secrets_and_writes_only_its_own_node(node_cluster):
    node = certs.kubeconfig_path(node_cluster.data_dir, "kubelet")
    with node_cluster.http() as admin:
        admin.post("/api/v1/nodes", json={"metadata": {"name": "elsewhere"}})
        for name, where in (("mine", "e2e-node"), ("theirs", "elsewhere")):
            admin.post("/api/v1/namespaces/default/secrets", json={"metadata": {"name": f"s-{name}"},
                                                                   "stringData": {"k": name}})
            admin.post("/api/v1/namespaces/default/pods", json={
                "metadata": {"name": f"authz-{name}"},
                "spec": {"nodeName": where, "containers": [{"name": "c", "image": "busybox",
                                                             "command": ["sleep", "3600"]}],
                         "volumes": [{"name": "v", "secret": {"secretName": f"s-{name}"}}]}})
    try:
        with node_cluster.http(kubeconfig=node) as kubelet:
            assert wait_for(lambda: kubelet.get("/api/v1/namespaces/default/secrets/s-mine").status_code == 200, 20)
            theirs = kubelet.get("/api/v1/namespaces/default/secrets/s-theirs")
            assert theirs.status_code == 403
            assert theirs.json()["message"] == (
                'secrets "s-theirs" is forbidden: User "system:node:e2e-node" cannot get resource "secrets" in API '
                'group "" in the namespace "default": '
                "no relationship found between node 'e2e-node' and this object")
            status = kubelet.patch("/api/v1/nodes/elsewhere/status", json={"status": {"phase": "Running"}},
                                   headers={"Content-Type": "application/merge-patch+json"})
            assert status.status_code == 403
            lease = kubelet.put("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/elsewhere",
                                json={"metadata": {"name": "elsewhere"}, "spec": {}})
            assert lease.status_code == 403
    finally:
        with node_cluster.http() as admin:
            for name in ("mine", "theirs"):
                admin.delete(f"/api/v1/namespaces/default/pods/authz-{name}", params={"gracePeriodSeconds": "0"})
                admin.delete(f"/api/v1/namespaces/default/secrets/s-{name}")
            admin.delete("/api/v1/nodes/elsewhere")


def test_the_kubelet_port_refuses_anonymous_and_unauthorized_callers_but_serves_the_apiserver(node_cluster):
    import ssl

    import httpx

    with node_cluster.http() as admin:
        node = admin.get("/api/v1/nodes/e2e-node").json()
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    directory = certs.pki_dir(node_cluster.data_dir)
    user_kubeconfig(node_cluster, "mallory")       # a CA-signed certificate without any binding

    def call(cert: str = "") -> httpx.Response:
        context = ssl.create_default_context(cafile=str(node_cluster.ca_file))
        context.check_hostname = False
        if cert:
            context.load_cert_chain(str(directory / f"{cert}.crt"), str(directory / f"{cert}.key"))
        with httpx.Client(verify=context, timeout=30) as http:
            return http.get(f"https://127.0.0.1:{port}/pods")

    assert call().status_code == 401
    refused = call("test-user-mallory")
    assert (refused.status_code, refused.text) == (
        403, "Forbidden (user=mallory, verb=get, resource=nodes, subresource=proxy)")
    assert call("apiserver-kubelet-client").status_code == 200
