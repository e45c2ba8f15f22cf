"""pods/log proxied to a kubelet (here a stand-in HTTP server speaking the kubelet's
/containerLogs path) and the errors Kubernetes gives before reaching one."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from pkube.apiserver.kubelet_proxy import KubeletConnection
from pkube.cluster.etcd import free_port
from tests.helpers.kubelet import node_with_kubelet
from tests.integration.conftest import start_apiserver, stop_apiserver

PODS = "/api/v1/namespaces/default/pods"


class FakeKubeletLogs(BaseHTTPRequestHandler):
    """Answers /containerLogs/NS/POD/CONTAINER with a line naming what was asked."""

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if parts[1] != "containerLogs" or parts[4] == "ghost":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"container not found")
            return
        query = parse_qs(url.query)
        body = f"log of {parts[2]}/{parts[3]}/{parts[4]} tail={query.get('tailLines', ['all'])[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def kubelet_port():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeKubeletLogs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http(etcd, kubelet_port):
    thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="http"))
    try:
        with api.client() as client:
            client.post("/api/v1/nodes", json=node_with_kubelet("n1", kubelet_port))
            yield client
    finally:
        stop_apiserver(thread)


def pod(name: str, containers=("main",), node: str | None = "n1") -> dict:
    spec = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_log_is_streamed_from_the_kubelet(http):
    http.post(PODS, json=pod("web"))
    resp = http.get(f"{PODS}/web/log", params={"tailLines": "5"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "log of default/web/main tail=5\n"


def test_log_errors_before_the_kubelet(http):
    http.post(PODS, json=pod("two", containers=("a", "b")))
    http.post(PODS, json=pod("idle", node=None))
    http.post(PODS, json=pod("lost", node="gone-node"))
    assert "choose one of: [a b]" in http.get(f"{PODS}/two/log").json()["message"]
    assert http.get(f"{PODS}/two/log", params={"container": "b"}).text == "log of default/two/b tail=all\n"
    assert http.get(f"{PODS}/two/log", params={"container": "c"}).status_code == 400
    assert http.get(f"{PODS}/idle/log").json()["message"] == "pod idle does not have a host assigned"
    assert http.get(f"{PODS}/nope/log").status_code == 404
    assert http.get(f"{PODS}/lost/log").status_code == 404
    assert http.get(f"{PODS}/two/log", params={"container": "a", "tailLines": "x"}).status_code == 400


def test_log_of_an_unreachable_kubelet_is_503(http):
    http.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "dark"},
                                     "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                                "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}})
    http.post(PODS, json=pod("p", node="dark"))
    resp = http.get(f"{PODS}/p/log")
    assert resp.status_code == 503 and resp.json()["kind"] == "Status"


def test_pods_log_is_discoverable(http):
    resources = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    assert resources["pods/log"]["verbs"] == ["get"]
