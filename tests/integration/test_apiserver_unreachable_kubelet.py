"""A node whose kubelet cannot be reached: logs, exec, attach and port-forward answer with a
Status naming the node (503 ServiceUnavailable), and the real kubectl shows it — through the
WebSocket refusal and through its SPDY fallback alike."""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import pytest

from pkube.apiserver.kubelet_proxy import KubeletConnection
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.kubelet import node_with_kubelet
from tests.integration.conftest import start_apiserver, stop_apiserver


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(etcd, tmp_path):
    thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="http"))
    try:
        with httpx.Client(base_url=api.url) as http:
            http.post("/api/v1/nodes", json=node_with_kubelet("gone", closed_port()))
            spec = {"nodeName": "gone", "containers": [{"name": "main", "image": "busybox"}]}
            http.post("/api/v1/namespaces/default/pods",
                      json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec})
            http.patch("/api/v1/namespaces/default/pods/web/status", json={"status": {"phase": "Running"}},
                       headers={"Content-Type": "application/merge-patch+json"})
        yield api, write_kubeconfig(tmp_path / "kubeconfig", api.url)
    finally:
        stop_apiserver(thread)


def kubectl(config, *args):
    return subprocess.run([shutil.which("kubectl"), "--kubeconfig", str(config), *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [("exec", "web", "--", "true"), ("attach", "web"), ("logs", "web"),
                                     ("port-forward", "pod/web", "18089:80")])
def test_kubectl_shows_the_unreachable_node(cluster, command):
    _api, config = cluster
    done = kubectl(config, *command)
    assert done.returncode != 0
    assert 'cannot reach the kubelet of node "gone"' in done.stderr, done.stderr
    assert "MethodNotAllowed" not in done.stderr and "Traceback" not in done.stderr


def test_the_spdy_fallback_gets_the_status(cluster):
    api, _config = cluster
    answer = httpx.post(f"{api.url}/api/v1/namespaces/default/pods/web/exec?command=true&stdout=true",
                        headers={"Upgrade": "SPDY/3.1", "Connection": "Upgrade"})
    status = answer.json()
    assert answer.status_code == 503 and status["reason"] == "ServiceUnavailable"
    assert 'node "gone"' in status["message"]
