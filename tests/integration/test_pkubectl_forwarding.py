"""pkubectl port-forward, cp and attach through a real apiserver to a stand-in kubelet that
speaks the kubelet's protocols (tests/helpers/kubelet.py): portForward's channels with their
port prefixes, exec's channels carrying a tar stream, attach's output. And the one line
pkubectl prints when the apiserver cannot reach a pod's kubelet."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import tarfile

import httpx
import pytest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pkube.apiserver.kubelet_proxy import KubeletConnection
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.kubelet import node_with_kubelet, serving
from tests.integration.conftest import start_apiserver, stop_apiserver

STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
REFUSED_PORT = 9999


class FakePod:
    """What the stand-in kubelet knows of its one pod: a filesystem (path -> bytes, or None
    for a directory) and how many port-forward WebSockets it was asked for."""

    def __init__(self):
        self.files: dict[str, bytes | None] = {"/data": None, "/data/a.txt": b"alpha\n",
                                               "/data/sub": None, "/data/sub/b.txt": b"beta\n", "/tmp": None}
        self.forward_sockets = 0
        self.unpack_commands: list[list[str]] = []
        self.summary: dict = {}     # what /stats/summary answers

    def tar_of(self, path: str) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, content in sorted(self.files.items()):
                if name != path and not name.startswith(path.rstrip("/") + "/"):
                    continue
                info = tarfile.TarInfo(name.lstrip("/"))
                if content is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
                else:
                    info.size, info.mode = len(content), 0o644
                    archive.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    def untar(self, data: bytes, directory: str) -> None:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive:
                name = directory.rstrip("/") + "/" + member.name
                self.files[name] = archive.extractfile(member).read() if member.isfile() else None


async def _accept(websocket: WebSocket, supported: tuple[str, ...]) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=next((p for p in offered if p in supported), None))


def routes(pod: FakePod) -> list:
    async def port_forward(websocket: WebSocket) -> None:
        """Each port: the prefix on its data and error channels, then its data echoed in upper case."""
        await _accept(websocket, ("v4.channel.k8s.io", "portforward.k8s.io"))
        pod.forward_sockets += 1
        port = int(websocket.query_params["ports"])
        for channel in (0, 1):
            await websocket.send_bytes(bytes([channel]) + port.to_bytes(2, "little"))
        if port == REFUSED_PORT:
            await websocket.send_bytes(b"\x01" + f"cannot connect to port {port} in the pod".encode())
            await websocket.close()
            return
        try:
            while True:
                message = await websocket.receive_bytes()
                if message[0] == 0:
                    await websocket.send_bytes(b"\x00" + message[1:].upper())
        except WebSocketDisconnect:
            return

    async def exec_(websocket: WebSocket) -> None:
        """test -d, tar cf - PATH and tar -xmf - -C DIR over the v5 channels."""
        await _accept(websocket, ("v5.channel.k8s.io",))
        command = websocket.query_params.getlist("command")
        status = SUCCESS
        if command[:2] == ["test", "-d"]:
            if pod.files.get(command[2], b"") is not None:
                status = {**SUCCESS, "status": "Failure", "reason": "NonZeroExitCode",
                          "details": {"causes": [{"reason": "ExitCode", "message": "1"}]}}
        elif command[:3] == ["tar", "cf", "-"]:
            await websocket.send_bytes(bytes([STDOUT]) + pod.tar_of(command[3]))
        elif command[:1] == ["tar"] and "-xmf" in command:
            pod.unpack_commands.append(command)
            received = b""
            while True:
                message = await websocket.receive_bytes()
                if message[:2] == bytes([CLOSE, STDIN]):
                    break
                received += message[1:]
            pod.untar(received, command[command.index("-C") + 1])
        await websocket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        await websocket.close()

    async def attach(websocket: WebSocket) -> None:
        await _accept(websocket, ("v5.channel.k8s.io",))
        await websocket.send_bytes(bytes([STDOUT]) + b"attached to the main process\n")
        await websocket.send_bytes(bytes([ERROR]) + json.dumps(SUCCESS).encode())
        await websocket.close()

    async def logs(request) -> PlainTextResponse:
        return PlainTextResponse(f"the log of {request.path_params['pod']}/{request.path_params['container']}\n")

    async def summary(request) -> JSONResponse:
        return JSONResponse(pod.summary)

    return [Route("/stats/summary", summary),
            WebSocketRoute("/portForward/{ns}/{pod}", port_forward),
            WebSocketRoute("/exec/{ns}/{pod}/{container}", exec_),
            WebSocketRoute("/attach/{ns}/{pod}/{container}", attach),
            Route("/containerLogs/{ns}/{pod}/{container}", logs)]


@pytest.fixture
def pod() -> FakePod:
    return FakePod()


@pytest.fixture
def cluster(etcd, pod, tmp_path):
    """An apiserver whose node n1 has the stand-in kubelet and node n2 none; pod web (Running)
    on n1, pod orphan on n2. Yields a function running pkubectl (a subprocess)."""
    with serving(routes(pod)) as kubelet_port:
        thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="http"))
        try:
            with httpx.Client(base_url=api.url) as http:
                http.post("/api/v1/nodes", json=node_with_kubelet("n1", kubelet_port)).raise_for_status()
                http.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
                for name, node in (("web", "n1"), ("orphan", "n2")):
                    http.post("/api/v1/namespaces/default/pods", json={
                        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox",
                                                                   "ports": [{"name": "http", "containerPort": 8080}]}]},
                    }).raise_for_status()
                    http.patch(f"/api/v1/namespaces/default/pods/{name}/status", json={"status": {"phase": "Running"}},
                               headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
                http.post("/api/v1/namespaces/default/services", json={
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}).raise_for_status()
            config = write_kubeconfig(tmp_path / "kubeconfig", api.url)
            yield Pkubectl(config, tmp_path, api.url)
        finally:
            stop_apiserver(thread)


class Pkubectl:
    def __init__(self, kubeconfig, home, url: str):
        self.url = url
        self.argv = [sys.executable, "-m", "pkube.kubectl", "--kubeconfig", str(kubeconfig)]
        self.env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}

    def __call__(self, *args: str, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=self.env, cwd=cwd)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*self.argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=self.env)


def _forwarded_port(proc: subprocess.Popen, remote: int) -> int:
    """The local port from ``Forwarding from 127.0.0.1:PORT -> REMOTE`` (the first line)."""
    line = proc.stdout.readline()
    match = re.fullmatch(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {remote}\n", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return int(match.group(1))


def _round_trip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    return out, err


# ---------------------------------------------------------------- port-forward

def test_port_forward_relays_each_connection_over_its_own_websocket(cluster, pod):
    proc = cluster.start("port-forward", "pod/web", ":8080")
    try:
        port = _forwarded_port(proc, 8080)
        assert _round_trip(port, b"hello") == b"HELLO"
        assert _round_trip(port, b"again, a second connection") == b"AGAIN, A SECOND CONNECTION"
        assert pod.forward_sockets == 2
    finally:
        out, _ = _stop(proc)
    assert out.count(f"Handling connection for {port}\n") == 2


def test_port_forward_to_a_service_uses_its_target_port(cluster, pod):
    proc = cluster.start("port-forward", "svc/web", ":80")
    try:
        port = _forwarded_port(proc, 8080)      # the Service's port 80 is the pod's port named http
        assert _round_trip(port, b"through the service") == b"THROUGH THE SERVICE"
    finally:
        _stop(proc)


def test_port_forward_reports_the_error_channel(cluster):
    proc = cluster.start("port-forward", "web", f":{REFUSED_PORT}")
    try:
        port = _forwarded_port(proc, REFUSED_PORT)
        assert _round_trip(port, b"anyone?") == b""     # the connection is closed
    finally:
        _, err = _stop(proc)
    assert f"error: an error occurred forwarding {port} -> {REFUSED_PORT}: cannot connect to port {REFUSED_PORT} in the pod" in err


def test_port_forward_needs_a_running_pod_and_ports(cluster):
    done = cluster("port-forward", "web")
    assert (done.returncode, done.stderr) == (1, "error: TYPE/NAME and list of ports are required for port-forward\n")
    done = cluster("port-forward", "ghost", "8080")
    assert (done.returncode, done.stderr) == (1, 'Error from server (NotFound): pods "ghost" not found\n')


# ---------------------------------------------------------------- cp

def test_cp_from_a_pod_copies_a_file_and_a_tree(cluster, tmp_path):
    done = cluster("cp", "web:/data/a.txt", str(tmp_path / "a-copy.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a-copy.txt").read_bytes() == b"alpha\n"
    done = cluster("cp", "default/web:/data", str(tmp_path / "tree"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tree" / "a.txt").read_bytes() == b"alpha\n"
    assert (tmp_path / "tree" / "sub" / "b.txt").read_bytes() == b"beta\n"


def test_cp_to_a_pod_names_the_file_by_its_destination(cluster, pod, tmp_path):
    (tmp_path / "local.txt").write_bytes(b"from the laptop\n")
    done = cluster("cp", str(tmp_path / "local.txt"), "web:/tmp/remote.txt")
    assert done.returncode == 0, done.stderr
    assert pod.files["/tmp/remote.txt"] == b"from the laptop\n"
    done = cluster("cp", str(tmp_path / "local.txt"), "web:/data")      # a directory: the file goes in it
    assert done.returncode == 0, done.stderr
    assert pod.files["/data/local.txt"] == b"from the laptop\n"
    assert pod.unpack_commands == [["tar", "-xmf", "-", "-C", "/tmp"], ["tar", "-xmf", "-", "-C", "/data"]]
    done = cluster("cp", "--no-preserve", str(tmp_path / "local.txt"), "web:/tmp/kept.txt")
    assert done.returncode == 0, done.stderr
    assert pod.unpack_commands[-1] == ["tar", "--no-same-permissions", "--no-same-owner", "-xmf", "-", "-C", "/tmp"]
    done = cluster("cp", str(tmp_path / "missing"), "web:/tmp/x")
    assert (done.returncode, done.stderr) == (1, f"error: {tmp_path / 'missing'} doesn't exist in local filesystem\n")


# ---------------------------------------------------------------- attach, and an unreachable kubelet

def test_attach_prints_the_output(cluster):
    done = cluster("attach", "web")
    assert (done.returncode, done.stdout) == (0, "attached to the main process\n")


def test_a_pod_whose_kubelet_cannot_be_reached_is_one_status_line(cluster):
    for verb in (["exec", "orphan", "--", "true"], ["attach", "orphan", "-q"], ["cp", "orphan:/etc/hosts", "x"]):
        done = cluster(*verb)
        assert done.returncode == 1, verb
        assert re.fullmatch(r'Error from server \(ServiceUnavailable\): .*n2.*\n', done.stderr), (verb, done.stderr)
        assert "Traceback" not in done.stderr
    proc = cluster.start("port-forward", "orphan", ":8080")
    try:
        with socket.create_connection(("127.0.0.1", _forwarded_port(proc, 8080)), timeout=10) as conn:
            assert conn.recv(10) == b""        # closed once the apiserver refused
    finally:
        _, err = _stop(proc)
    assert re.search(r'^Error from server \(ServiceUnavailable\): .*n2', err, re.M), err


# ---------------------------------------------------------------- run -i --rm

class StandInNodeAgent:
    """Binds each new unscheduled pod to n1 and reports it in ``phase`` (with exit code 3 when
    it is a finished phase): the scheduler's and the kubelet's part of ``run -i``."""

    def __init__(self, url: str, phase: str):
        import threading

        self.url, self.phase, self.stopped = url, phase, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(10)

    def _run(self) -> None:
        pods = "/api/v1/namespaces/default/pods"
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(None, connect=10)) as http:
            while not self.stopped.is_set():   # a list, then a short watch from its revision
                listed = http.get(pods).json()
                for obj in listed["items"]:
                    if not obj["spec"].get("nodeName"):
                        self._start(http, pods, obj)
                params = {"watch": "1", "timeoutSeconds": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}
                with http.stream("GET", pods, params=params) as events:
                    for line in events.iter_lines():
                        event = json.loads(line) if line.strip() else {}
                        obj = event.get("object") or {}
                        if event.get("type") == "ADDED" and not (obj.get("spec") or {}).get("nodeName"):
                            self._start(http, pods, obj)

    def _start(self, http: httpx.Client, pods: str, pod: dict) -> None:
        name = pod["metadata"]["name"]
        http.post(f"{pods}/{name}/binding", json={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                                   "target": {"kind": "Node", "name": "n1"}}).raise_for_status()
        status: dict = {"phase": self.phase}
        if self.phase in ("Succeeded", "Failed"):
            status["containerStatuses"] = [{"name": name, "image": "busybox", "imageID": "", "ready": False,
                                            "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]
        http.patch(f"{pods}/{name}/status", json={"status": status},
                   headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()


def test_run_interactive_waits_for_the_pod_attaches_and_removes_it(cluster):
    with StandInNodeAgent(cluster.url, "Running"):
        done = cluster("run", "debug", "-i", "--rm", "--image=busybox", "--", "sh")
    assert (done.returncode, done.stdout) == (0, 'attached to the main process\npod "debug" deleted\n'), done.stderr
    assert done.stderr == "If you don't see a command prompt, try pressing enter.\n"
    with httpx.Client(base_url=cluster.url) as http:    # bound to a node: deleted gracefully
        assert http.get("/api/v1/namespaces/default/pods/debug").json()["metadata"]["deletionTimestamp"]


def test_run_attached_to_a_pod_that_already_finished_prints_its_log_and_exit_code(cluster):
    with StandInNodeAgent(cluster.url, "Failed"):
        done = cluster("run", "once", "--attach", "--rm", "--restart=Never", "--image=busybox")
    assert (done.returncode, done.stdout) == (3, 'the log of once/once\npod "once" deleted\n'), done.stderr


def test_run_attached_refuses_kubectls_bad_combinations(cluster):
    done = cluster("run", "x", "--rm", "--image=busybox")
    assert (done.returncode, done.stderr) == (1, "error: --rm should only be used for attached containers\n"
                                                 "See 'pkubectl run -h' for help and examples\n")


# ---------------------------------------------------------------- top, from the apiserver's metrics.k8s.io

KUBECTL = __import__("shutil").which("kubectl")


def _summary_of(http: httpx.Client) -> dict:
    """A kubelet summary for node n1 and pod web (its real uid), with CPU rates."""
    web = http.get("/api/v1/namespaces/default/pods/web").json()["metadata"]
    return {"node": {"nodeName": "n1", "cpu": {"time": "2026-12-04T16:00:00Z", "usageNanoCores": 250_000_000},
                     "memory": {"workingSetBytes": 1536 * 2**20}},
            "pods": [{"podRef": {"name": "web", "namespace": "default", "uid": web["uid"]},
                      "cpu": {"time": "2026-12-04T16:00:00Z", "usageNanoCores": 1_750_000},
                      "containers": [{"name": "main", "cpu": {"usageNanoCores": 1_500_000},
                                      "memory": {"workingSetBytes": 10 * 2**20}},
                                     {"name": "side", "cpu": {"usageNanoCores": 250_000},
                                      "memory": {"workingSetBytes": 2 * 2**20}}]}]}


@pytest.mark.skipif(KUBECTL is None, reason="the real kubectl is not installed")
def test_top_prints_what_kubectl_prints_from_the_metrics_api(cluster, pod):
    with httpx.Client(base_url=cluster.url) as http:
        pod.summary = _summary_of(http)
        http.patch("/api/v1/nodes/n1/status", headers={"Content-Type": "application/merge-patch+json"}, json={
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "allocatable": {"cpu": "2", "memory": "4Gi"}, "capacity": {"cpu": "4", "memory": "8Gi"}}}
                   ).raise_for_status()
    config = cluster.argv[cluster.argv.index("--kubeconfig") + 1]
    for args in (["top", "pod"], ["top", "pod", "--containers"], ["top", "node"], ["top", "node", "--show-capacity"]):
        theirs = subprocess.run([KUBECTL, "--kubeconfig", config, *args], capture_output=True, text=True, timeout=60,
                                env=cluster.env)
        mine = cluster(*args)
        assert (mine.returncode, mine.stdout, mine.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
    assert cluster("top", "pod").stdout == ("NAME   CPU(cores)   MEMORY(bytes)   \n"
                                            "web    2m           12Mi            \n")
