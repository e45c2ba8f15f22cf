"""pkubectl logs and exec through a real apiserver to a stand-in kubelet.

The stand-in answers the kubelet's /containerLogs/NS/POD/CONTAINER (text) and
/exec/NS/POD/CONTAINER (WebSocket, v5.channel.k8s.io) the way a kubelet does,
so these tests prove pkubectl's side of both streams end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from pkube.apiserver.kubelet_proxy import KubeletConnection
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.kubelet import node_with_kubelet, serving
from tests.integration.conftest import start_apiserver, stop_apiserver

STDOUT, STDERR, ERROR = 1, 2, 3


async def fake_exec(websocket: WebSocket) -> None:
    """``echo ARGS`` prints ARGS; ``fail N`` writes to stderr and exits N."""
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=offered[0] if offered else None)
    command = websocket.query_params.getlist("command")
    if command[:1] == ["fail"]:
        await websocket.send_bytes(bytes([STDERR]) + b"failing\n")
        status = {"status": "Failure", "reason": "NonZeroExitCode",
                  "details": {"causes": [{"reason": "ExitCode", "message": command[1]}]}}
    else:
        await websocket.send_bytes(bytes([STDOUT]) + (" ".join(command[1:]) + "\n").encode())
        status = {"status": "Success"}
    await websocket.send_bytes(bytes([ERROR]) + json.dumps({"metadata": {}, **status}).encode())
    await websocket.close()


async def fake_logs(request) -> PlainTextResponse:
    params = request.query_params
    lines = [f"line {i} of {request.path_params['pod']}/{request.path_params['container']}" for i in range(1, 4)]
    if params.get("tailLines"):
        lines = lines[-int(params["tailLines"]):]
    if params.get("timestamps") == "true":
        lines = [f"2026-01-01T00:00:00.000000000Z {line}" for line in lines]
    return PlainTextResponse("".join(line + "\n" for line in lines))


@pytest.fixture
def kubelet_port():
    with serving([WebSocketRoute("/exec/{ns}/{pod}/{container}", fake_exec),
                  Route("/containerLogs/{ns}/{pod}/{container}", fake_logs)]) as port:
        yield port


@pytest.fixture
def pkubectl(etcd, kubelet_port, tmp_path):
    thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="http"))
    try:
        with httpx.Client(base_url=api.url) as http:
            http.post("/api/v1/nodes", json=node_with_kubelet("n1", kubelet_port))
            http.post("/api/v1/namespaces/default/pods", json={
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"},
                                                          {"name": "side", "image": "busybox"}]}})
        config = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        yield lambda *args: subprocess.run([sys.executable, "-m", "pkube.kubectl", "--kubeconfig", str(config), *args],
                                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                                           env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    finally:
        stop_apiserver(thread)


def test_exec_prints_the_output_and_returns_the_exit_code(pkubectl):
    done = pkubectl("exec", "web", "-c", "main", "--", "echo", "hello", "world")
    assert (done.returncode, done.stdout) == (0, "hello world\n"), done.stderr
    failed = pkubectl("exec", "web", "-c", "side", "--", "fail", "3")
    assert (failed.returncode, failed.stderr) == (3, "failing\n")


def test_logs_of_a_container_with_tail_and_timestamps(pkubectl):
    done = pkubectl("logs", "web", "-c", "side", "--tail=2", "--timestamps")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("2026-01-01T00:00:00.000000000Z line 2 of web/side\n"
                           "2026-01-01T00:00:00.000000000Z line 3 of web/side\n")


def test_without_a_container_the_first_one_is_used_and_named(pkubectl):
    done = pkubectl("logs", "web", "--tail=1")
    assert (done.returncode, done.stdout) == (0, "line 3 of web/main\n"), done.stderr
    assert done.stderr == 'Defaulted container "main" out of: main, side\n'
    ran = pkubectl("exec", "web", "--", "echo", "hi")
    assert (ran.returncode, ran.stdout) == (0, "hi\n")


def test_a_missing_pod_is_one_line(pkubectl):
    for verb in (["logs", "ghost"], ["exec", "ghost", "--", "true"]):
        done = pkubectl(*verb)
        assert done.returncode == 1
        assert done.stderr == 'Error from server (NotFound): pods "ghost" not found\n'

