"""pods/exec: the real kubectl's WebSocket exec relayed through the apiserver to a kubelet
(here a stand-in that answers like one on /exec/NS/POD/CONTAINER)."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from apiserver.kubelet_proxy import KubeletConnection
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.kubelet import node_with_kubelet, serving
from tests.integration.conftest import start_apiserver, stop_apiserver

STDOUT, ERROR = 1, 3


async def fake_exec(websocket: WebSocket) -> None:
    """Echo the command line on stdout (channel 1), then report success (channel 3)."""
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=offered[0] if offered else None)
    command = websocket.query_params.getlist("command")
    path = websocket.url.path
    await websocket.send_bytes(bytes([STDOUT]) + f"{path} ran {' '.join(command)}\n".encode())
    await websocket.send_bytes(bytes([ERROR]) + json.dumps({"metadata": {}, "status": "Success"}).encode())
    await websocket.close()


@pytest.fixture
def kubelet_port():
    with serving([WebSocketRoute("/exec/{ns}/{pod}/{container}", fake_exec),
                  WebSocketRoute("/attach/{ns}/{pod}/{container}", fake_exec)]) as port:
        yield port


def websocket_library() -> bool:
    """uvicorn serves WebSockets only with wsproto (or websockets) installed."""
    import importlib.util
    return any(importlib.util.find_spec(name) for name in ("wsproto", "websockets"))


@pytest.fixture
def kubectl(etcd, kubelet_port, tmp_path):
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed: the exec check needs it on PATH")
    if not websocket_library():
        pytest.skip("no WebSocket library for uvicorn: pip install wsproto==1.3.2 (pods/exec needs it)")
    thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="http"))
    try:
        with httpx.Client(base_url=api.url) as http:
            http.post("/api/v1/nodes", json=node_with_kubelet("n1", kubelet_port))
            for name, node in (("web", "n1"), ("idle", None)):
                spec = {"containers": [{"name": "main", "image": "busybox"}], **({"nodeName": node} if node else {})}
                http.post("/api/v1/namespaces/default/pods",
                          json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
        config = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        yield lambda *args: subprocess.run([binary, "--kubeconfig", str(config), *args], capture_output=True,
                                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        stop_apiserver(thread)


def test_kubectl_exec_is_relayed_to_the_kubelet(kubectl):
    done = kubectl("exec", "web", "--", "echo", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "/exec/default/web/main ran echo hi\n"


def test_exec_on_an_unscheduled_pod_fails_cleanly(kubectl):
    done = kubectl("exec", "idle", "--", "true")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


def test_kubectl_attach_is_relayed_to_the_kubelet(kubectl):
    done = kubectl("attach", "web")
    assert done.returncode == 0, done.stderr
    assert "/attach/default/web/main ran" in done.stdout
