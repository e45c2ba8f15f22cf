"""The kubelet's API (kubelet.server) on a real runtime: busybox pods made as the kubelet
makes them, a KubeletServer on HTTPS, and clients speaking to it directly: logs, exec and
attach over the WebSocket channel protocol, portForward into the pod's network namespace,
the stats summary, the serving certificate."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time

import httpx
import pytest
import websocket

from pkube.kubelet import streams
from tests.helpers.kubelet_pods import PodMaker, serving_kubelet

pytestmark = pytest.mark.root

INSECURE = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}


@pytest.fixture
def pods(rt, rt_root):
    return PodMaker(rt, rt_root[1])


@pytest.fixture
def kubelet(rt, tmp_path):
    """(server, base URL, an httpx client trusting nothing)."""
    listed = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "listed", "namespace": "default"}}]
    with serving_kubelet(rt, tmp_path, pods_fn=lambda: listed) as (server, url):
        with httpx.Client(base_url=url, verify=False, timeout=30) as http:
            yield server, url, http


def wait_for_log(http, path: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in (body := http.get(path).text):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}: {body!r}"
        time.sleep(0.05)
    return body


def ws_connect(url: str, path: str, protocols=(streams.V5, streams.V4)):
    return websocket.create_connection(url.replace("https://", "wss://") + path, subprotocols=list(protocols),
                                       sslopt=INSECURE, timeout=30)


def read_until_close(ws) -> list[tuple[int, bytes]]:
    """Every (channel, data) the server sends until it closes."""
    frames = []
    while True:
        try:
            opcode, data = ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return frames
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frames.append(streams.Channels("base64.channel.k8s.io").decode(data.decode()))
        else:
            frames.append((data[0], data[1:]))


def joined(frames, channel: int) -> bytes:
    return b"".join(data for ch, data in frames if ch == channel)


# ----- plain endpoints, certificate -----

def test_healthz_pods_and_a_certificate_made_once(kubelet, rt, tmp_path):
    _, url, http = kubelet
    assert http.get("/healthz").text == "ok"
    assert http.get("/pods").json()["items"][0]["metadata"]["name"] == "listed"
    cert = (tmp_path / "pki" / "kubelet.crt").read_bytes()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(tmp_path / "pki" / "kubelet.crt"))) as trusting:
        assert trusting.get(url + "/healthz").text == "ok"   # the certificate names 127.0.0.1
    with serving_kubelet(rt, tmp_path) as (_, again):
        assert httpx.get(again + "/healthz", verify=False).text == "ok"
    assert (tmp_path / "pki" / "kubelet.crt").read_bytes() == cert


def test_a_taken_port_is_an_error_of_start_not_an_exit(rt, tmp_path):
    from tests.helpers.kubelet_pods import KubeletServer
    with serving_kubelet(rt, tmp_path) as (server, url):
        second = KubeletServer(rt, host="127.0.0.1", port=server.port, cert_dir=str(tmp_path / "pki"),
                               node_name="node-1")

        async def start_again():
            with pytest.raises(OSError, match="already in use"):
                await second.start()
            await second.stop()
        asyncio.run(start_again())
        assert httpx.get(url + "/healthz", verify=False).text == "ok"


def test_with_a_client_ca_only_clients_with_its_certificate_are_served(rt, tmp_path):
    from tests.integration.test_client_tls import make_cert, pem
    ca = make_cert("kubelet-client-ca", ca=True)
    client_cert, client_key = make_cert("kube-apiserver-kubelet-client", issuer=ca)
    stranger = make_cert("stranger")
    for name, data in (("ca.crt", pem(ca[0])), ("client.crt", pem(client_cert)), ("client.key", pem(key=client_key)),
                       ("stranger.crt", pem(stranger[0])), ("stranger.key", pem(key=stranger[1]))):
        (tmp_path / name).write_bytes(data)
    with serving_kubelet(rt, tmp_path, client_ca_file=str(tmp_path / "ca.crt")) as (_, url):
        assert httpx.get(url + "/healthz", verify=client_context(tmp_path, "client")).text == "ok"
        for refused in (client_context(tmp_path, None), client_context(tmp_path, "stranger")):
            with pytest.raises(httpx.HTTPError):
                httpx.get(url + "/healthz", verify=refused)


def client_context(directory, name) -> ssl.SSLContext:
    """A TLS context trusting any server, presenting `name`.crt/.key (None: no certificate)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if name:
        context.load_cert_chain(directory / f"{name}.crt", directory / f"{name}.key")
    return context


# ----- logs -----

def test_logs_whole_tail_timestamps_and_limit(kubelet, pods):
    _, _, http = kubelet
    pod = pods.sandbox("web")
    pods.container(pod, "main", "echo one; echo two; echo three; exec sleep 1000")
    path = "/containerLogs/default/web/main"
    assert wait_for_log(http, path, "three") == "one\ntwo\nthree\n"
    assert http.get(path, params={"tailLines": "2"}).text == "two\nthree\n"
    assert http.get(path, params={"tailLines": "0"}).text == ""
    stamped = http.get(path, params={"timestamps": "true"}).text.splitlines()
    assert [re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (\w+)$", line).group(1) for line in stamped] == \
        ["one", "two", "three"]
    assert http.get(path, params={"limitBytes": "6"}).text == "one\ntw"
    assert http.get(path, params={"sinceSeconds": "3600"}).text == "one\ntwo\nthree\n"
    bad = http.get(path, params={"tailLines": "many"})
    assert bad.status_code == 400 and "tailLines" in bad.text


def test_logs_of_the_previous_instance_and_of_missing_ones(kubelet, pods, rt):
    _, _, http = kubelet
    pod = pods.sandbox("web")
    first = pods.container(pod, "main", "echo first run")
    rt.wait(first.id, timeout=30)
    path = "/containerLogs/default/web/main"
    missing = http.get(path, params={"previous": "true"})
    assert missing.status_code == 404
    assert missing.text == 'previous terminated container "main" in pod "web" not found'
    pods.container(pod, "main", "echo second run; exec sleep 1000", attempt=1)
    assert wait_for_log(http, path, "second run") == "second run\n"
    assert http.get(path, params={"previous": "true"}).text == "first run\n"
    nothing = http.get("/containerLogs/default/web/sidecar")
    assert nothing.status_code == 404 and '"sidecar"' in nothing.text
    assert http.get("/containerLogs/default/nopod/main").status_code == 404


def test_a_followed_log_streams_until_the_container_stops(kubelet, pods, rt):
    _, _, http = kubelet
    pod = pods.sandbox("web")
    record = pods.container(pod, "main", "echo start; while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo done")
    with http.stream("GET", "/containerLogs/default/web/main", params={"follow": "true"}) as response:
        chunks = response.iter_text()
        seen = ""
        while "start\n" not in seen:
            seen += next(chunks)
        rt.exec(record.id, ["touch", "/tmp/stop"])
        seen += "".join(chunks)   # ends: the container stopped
    assert seen == "start\ndone\n"


def test_a_follower_that_goes_away_leaves_no_thread_behind(kubelet, pods):
    _, _, http = kubelet
    pod = pods.sandbox("web")
    pods.container(pod, "main", "echo tick; exec sleep 1000")
    for _ in range(3):
        with http.stream("GET", "/containerLogs/default/web/main", params={"follow": "1"}) as response:
            assert next(response.iter_text()) == "tick\n"
    deadline = time.monotonic() + 30
    while followers := [t for t in threading.enumerate() if t.name == "kubelet-logs"]:
        assert time.monotonic() < deadline, f"log followers still running: {followers}"
        time.sleep(0.05)
    assert http.get("/healthz").text == "ok"


# ----- exec and attach -----

def test_exec_reports_output_streams_and_the_exit_code(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/exec/default/web/main?command=sh&command=-c&command=echo+out;+echo+err+>%262;+exit+3"
                         "&stdout=1&stderr=1")
    assert ws.subprotocol == streams.V5
    frames = read_until_close(ws)
    assert (joined(frames, 1), joined(frames, 2)) == (b"out\n", b"err\n")
    status = json.loads(joined(frames, 3))
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_exec_feeds_stdin_until_the_v5_close(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/exec/default/web/main?command=wc&command=-c&stdin=true&stdout=true&stderr=true")
    ws.send_binary(bytes([streams.STDIN]) + b"12345")
    ws.send_binary(bytes([streams.STDIN]) + b"678")
    ws.send_binary(bytes([streams.CLOSE, streams.STDIN]))
    frames = read_until_close(ws)
    assert joined(frames, 1).strip() == b"8"
    assert json.loads(joined(frames, 3))["status"] == "Success"


def test_exec_in_base64_over_v4(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/exec/default/web/main?command=printf&command=%5Cx00%5Cxff", ["v4.base64.channel.k8s.io"])
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    frames = read_until_close(ws)
    assert joined(frames, 1) == b"\x00\xff"
    assert json.loads(joined(frames, 3))["status"] == "Success"


def test_exec_with_a_tty_is_resized(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/exec/default/web/main?command=sh&command=-c&command=read+x;+stty+size"
                         "&stdin=true&stdout=true&tty=true")
    ws.send_binary(bytes([streams.RESIZE]) + json.dumps({"Width": 123, "Height": 45}).encode())
    ws.send_binary(bytes([streams.STDIN]) + b"go\r")
    frames = read_until_close(ws)
    assert b"45 123" in joined(frames, 1)
    assert joined(frames, 2) == b""   # a tty has one output stream
    assert json.loads(joined(frames, 3))["status"] == "Success"


def test_an_exec_client_that_goes_away_leaves_no_thread_behind(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/exec/default/web/main?command=sh&command=-c&command=echo+started;+exec+sleep+1000")
    assert ws.recv_data()[1] == b"\x01started\n"
    ws.close()
    deadline = time.monotonic() + 30
    while readers := [t for t in threading.enumerate() if t.name == "kubelet-exec"]:
        assert time.monotonic() < deadline, f"exec readers still running: {readers}"
        time.sleep(0.05)


@pytest.mark.parametrize("path, reason, words", [
    ("/exec/default/web/sidecar?command=true", "NotFound", "not found"),
    ("/exec/default/web/main", "BadRequest", "command"),
    ("/exec/default/web/main?command=no-such-binary", "InternalError", "no-such-binary"),
    ("/exec/default/web/main?command=true&stdout=0&stderr=0", "BadRequest", "at least 1"),
])
def test_exec_failures_come_as_a_status_on_the_error_channel(kubelet, pods, path, reason, words):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    status = json.loads(joined(read_until_close(ws_connect(url, path)), 3))
    assert (status["status"], status["reason"]) == ("Failure", reason)
    assert words in status["message"]


def test_exec_without_websocket_gets_a_clean_refusal(kubelet):
    _, _, http = kubelet
    answer = http.post("/exec/default/web/main?command=true",
                       headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest" and "SPDY" in answer.json()["message"]


def test_attach_relays_the_containers_output_and_stdin(kubelet, pods, rt):
    _, url, _ = kubelet
    pod = pods.sandbox("web")
    record = pods.container(pod, "main", "echo ready; read line; echo got $line", stdin_open=True)
    ws = ws_connect(url, "/attach/default/web/main?stdin=true&stdout=true&stderr=true")
    ws.send_binary(bytes([streams.STDIN]) + b"hello\n")
    frames = read_until_close(ws)   # the container ends after its reply
    assert b"got hello" in joined(frames, 1)
    assert json.loads(joined(frames, 3))["status"] == "Success"
    assert rt.wait(record.id, timeout=30) == 0


# ----- portForward -----

HTTPD = "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www"


def test_port_forward_reaches_a_port_in_the_pods_network_namespace(kubelet, pods, rt):
    _, url, _ = kubelet
    pod = pods.sandbox("web")
    record = pods.container(pod, "main", HTTPD)
    wait_until_listening(rt, record.id, 8080)
    ws = ws_connect(url, "/portForward/default/web?ports=8080", [streams.V4])
    prefixes = [ws.recv_data()[1] for _ in range(2)]
    assert prefixes == [b"\x00" + streams.port_prefix(8080), b"\x01" + streams.port_prefix(8080)]
    ws.send_binary(b"\x00GET /index.html HTTP/1.0\r\n\r\n")
    frames = read_until_close(ws)   # httpd closes the connection after answering
    response = joined(frames, 0)
    assert response.startswith(b"HTTP/1.") and response.endswith(b"hello from the pod\n")


def test_port_forward_of_two_ports_one_closed_in_base64(kubelet, pods, rt):
    _, url, _ = kubelet
    record = pods.container(pods.sandbox("web"), "main", HTTPD)
    wait_until_listening(rt, record.id, 8080)
    ws = ws_connect(url, "/portForward/default/web?ports=9,8080", ["v4.base64.channel.k8s.io"])
    channels = streams.Channels("v4.base64.channel.k8s.io")
    prefixes = [channels.decode(ws.recv()) for _ in range(4)]
    assert prefixes == [(0, streams.port_prefix(9)), (1, streams.port_prefix(9)),
                        (2, streams.port_prefix(8080)), (3, streams.port_prefix(8080))]
    ws.send(channels.encode(2, b"GET /index.html HTTP/1.0\r\n\r\n"))
    frames = read_until_close(ws)
    assert b"cannot connect to port 9" in joined(frames, 1)
    assert joined(frames, 2).endswith(b"hello from the pod\n")


def test_port_forward_to_a_closed_port_says_so_on_the_error_channel(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    ws = ws_connect(url, "/portForward/default/web?ports=9", [streams.V4])
    frames = read_until_close(ws)
    assert b"cannot connect to port 9" in joined(frames, 1)


def test_port_forward_refuses_bad_requests_before_the_upgrade(kubelet, pods):
    _, url, _ = kubelet
    pods.container(pods.sandbox("web"), "main", "exec sleep 1000")
    for path, code in (("/portForward/default/web", 400), ("/portForward/default/web?ports=http", 400),
                       ("/portForward/default/nopod?ports=80", 404)):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            ws_connect(url, path, [streams.V4])
        assert refused.value.status_code == code


def wait_until_listening(rt, cid: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while rt.exec(cid, ["sh", "-c", f"netstat -ltn | grep -q ':{port} '"]).exit_code != 0:
        assert time.monotonic() < deadline, f"nothing listens on {port} in {cid}"
        time.sleep(0.05)


# ----- stats -----

def test_stats_summary_of_the_node_and_its_pods(kubelet, pods):
    _, _, http = kubelet
    pod = pods.sandbox("web")
    pods.container(pod, "main", "exec sleep 1000")
    pods.container(pod, "busy", "while true; do :; done")
    first = http.get("/stats/summary").json()
    assert first["node"]["nodeName"] == "node-1"
    assert first["node"]["memory"]["workingSetBytes"] > 0
    assert first["node"]["cpu"]["usageCoreNanoSeconds"] > 0
    deadline = time.monotonic() + 30
    while True:   # the rate needs a second sample, and some CPU used since the first
        summary = http.get("/stats/summary").json()
        (web,) = [p for p in summary["pods"] if p["podRef"]["name"] == "web"]
        containers = {c["name"]: c for c in web["containers"]}
        if containers["busy"]["cpu"].get("usageNanoCores", 0) > 0:
            break
        assert time.monotonic() < deadline, f"no CPU rate for a busy container: {containers['busy']}"
        time.sleep(0.1)
    assert web["podRef"] == {"name": "web", "namespace": "default", "uid": pod.labels["io.kubernetes.pod.uid"]}
    assert set(containers) == {"main", "busy"}
    assert containers["main"]["memory"]["workingSetBytes"] > 0
    assert web["cpu"]["usageCoreNanoSeconds"] >= containers["busy"]["cpu"]["usageCoreNanoSeconds"]
    assert web["cpu"]["usageNanoCores"] > 0
