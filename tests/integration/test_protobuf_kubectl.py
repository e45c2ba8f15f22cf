"""The real kubectl's protobuf request bodies decode to the JSON kubectl would have sent.

kubectl 1.32 sends protobuf from its typed ``create <kind>`` and ``debug`` commands (``run``
and ``expose`` send JSON).
A capture server (plain http.server on a free loopback port) records the body of each
protobuf POST and answers 500; ``kubectl ... --dry-run=client -o json`` prints the same object
as JSON, which is the oracle. Bodies are captured at test time: no binary fixtures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from copy import deepcopy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pkube.apiserver.protobuf import MEDIA_TYPE, decode_protobuf
from pkube.cluster.etcd import free_port
from tests.unit.test_protobuf import POD

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

DEPLOYMENT_D = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "d", "namespace": "default", "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                 "resourceVersion": "7", "labels": {"app": "d"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
             "template": {"metadata": {"labels": {"app": "d"}},
                          "spec": {"containers": [{"name": "busybox", "image": "busybox",
                                                   "ports": [{"containerPort": 80,
                                                              "protocol": "TCP"}]}]}}},
}


def _resources(*entries):
    return [{"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for name, kind, namespaced in entries]


DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                             "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": _resources(
        ("pods", "Pod", True), ("services", "Service", True), ("namespaces", "Namespace", False),
        ("secrets", "Secret", True), ("configmaps", "ConfigMap", True),
        ("serviceaccounts", "ServiceAccount", True), ("nodes", "Node", False))},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                      "resources": _resources(("deployments", "Deployment", True),
                                              ("replicasets", "ReplicaSet", True))},
    "/apis/apps/v1/namespaces/default/deployments/d": DEPLOYMENT_D,
    "/api/v1/namespaces/default/pods/web-0": {key: value for key, value in POD.items()
                                              if key != "status"},
    "/api/v1/nodes/n1": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
}


class _CaptureHandler(BaseHTTPRequestHandler):
    """Serves DISCOVERY as JSON, records protobuf bodies, answers everything else 500."""

    def do_GET(self):
        document = DISCOVERY.get(self.path.split("?")[0])
        self._reply(200 if document else 404, document or {"kind": "Status", "code": 404})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type") == MEDIA_TYPE:
            self.server.bodies.append(body)
        self._reply(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "message": "captured", "code": 500})

    do_PUT = do_POST

    def _reply(self, code: int, document: dict):
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kubeconfig(tmp_path):
    """A kubeconfig whose cluster is a running capture server (``.server.bodies``)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _CaptureHandler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "kubeconfig"
    url = f"http://127.0.0.1:{server.server_port}"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                                               "namespace": "default"}}]}))
    try:
        yield path, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _kubectl(kubeconfig, args, home) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, timeout=60)


def captured_body(kubeconfig, server, args, home) -> bytes:
    """The protobuf body kubectl POSTs for ``args`` (the command then fails on our 500)."""
    result = _kubectl(kubeconfig, args, home)
    assert server.bodies, f"kubectl {args} sent no protobuf body: {result.stderr.decode()}"
    return server.bodies[-1]


def dry_run_json(kubeconfig, args, home) -> dict:
    """The object kubectl prints for ``args --dry-run=client -o json``."""
    split = args.index("--") if "--" in args else len(args)
    result = _kubectl(kubeconfig, [*args[:split], "--dry-run=client", "-o", "json",
                                   *args[split:]], home)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def pruned(value):
    """``value`` without nulls at any depth (kubectl prints ``creationTimestamp: null``)."""
    if isinstance(value, dict):
        return {key: pruned(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [pruned(item) for item in value]
    return value


COMMANDS = {
    "namespace": ["create", "namespace", "foo"],
    "secret": ["create", "secret", "generic", "s", "--from-literal=a=b",
               "--from-file=bin={binary_file}", "--from-literal=empty="],
    "configmap": ["create", "configmap", "cm", "--from-literal=k=v", "--from-literal=e="],
    "serviceaccount": ["create", "serviceaccount", "sa"],
    "service": ["create", "service", "clusterip", "x", "--tcp=80:8080", "--tcp=443:https"],
    "service-headless": ["create", "service", "clusterip", "h", "--clusterip=None"],
    "nodeport": ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "deployment": ["create", "deployment", "d", "--image=busybox", "--replicas=3", "--port=80",
                   "--", "sleep", "10"],
    "deployment-zero": ["create", "deployment", "z", "--image=busybox", "--replicas=0"],
}


def _command(name: str, tmp_path) -> list[str]:
    """COMMANDS[name] with ``{binary_file}`` made a file holding bytes 00 01 ff."""
    binary_file = tmp_path / "binary"
    binary_file.write_bytes(b"\x00\x01\xff")
    return [arg.format(binary_file=binary_file) for arg in COMMANDS[name]]


@pytest.mark.parametrize("name", COMMANDS)
def test_kubectl_protobuf_body_decodes_to_what_kubectl_sends_as_json(kubeconfig, tmp_path, name):
    path, server = kubeconfig
    args = _command(name, tmp_path)
    body = captured_body(path, server, args, tmp_path)
    expected = dry_run_json(path, args, tmp_path)

    decoded = decode_protobuf(body)

    assert pruned(decoded) == pruned(expected)


def test_kubectl_zero_and_empty_fields_are_left_out_like_json(kubeconfig, tmp_path):
    path, server = kubeconfig
    decoded = decode_protobuf(captured_body(path, server, COMMANDS["deployment"], tmp_path))

    container = decoded["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "busybox", "image": "busybox", "command": ["sleep", "10"],
                         "ports": [{"containerPort": 80}], "resources": {}}
    assert decoded["spec"]["replicas"] == 3
    assert "creationTimestamp" not in decoded["metadata"]


def test_kubectl_pointer_fields_keep_their_zero_values(kubeconfig, tmp_path):
    path, server = kubeconfig
    decoded = decode_protobuf(captured_body(path, server, COMMANDS["deployment-zero"], tmp_path))

    assert decoded["spec"]["replicas"] == 0


def test_kubectl_secret_bytes_come_back_base64(kubeconfig, tmp_path):
    path, server = kubeconfig
    decoded = decode_protobuf(captured_body(path, server, _command("secret", tmp_path),
                                              tmp_path))

    assert decoded["data"] == {"a": "Yg==", "bin": "AAH/", "empty": ""}


def test_kubectl_debug_node_pod_decodes(kubeconfig, tmp_path):
    path, server = kubeconfig
    pod = decode_protobuf(captured_body(path, server, ["debug", "node/n1", "--image=busybox"],
                                        tmp_path))

    assert pod["metadata"]["name"].startswith("node-debugger-n1-")
    assert pod["spec"] == {
        "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "debugger", "image": "busybox", "resources": {},
                        "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                        "terminationMessagePolicy": "File"}],
        "restartPolicy": "Never", "nodeName": "n1", "hostNetwork": True, "hostPID": True,
        "hostIPC": True, "tolerations": [{"operator": "Exists"}]}


def test_kubectl_debug_copy_keeps_every_pod_spec_field(kubeconfig, tmp_path):
    """kubectl decodes our rich Pod JSON, copies its spec and sends it back as protobuf."""
    path, server = kubeconfig
    args = ["debug", "web-0", "--copy-to=web-copy", "--image=busybox", "--container=dbg",
            "--keep-liveness", "--keep-readiness", "--keep-startup", "--same-node"]
    copy = decode_protobuf(captured_body(path, server, args, tmp_path))

    expected = deepcopy(POD["spec"])
    expected["containers"].append({"name": "dbg", "image": "busybox", "resources": {},
                                   "terminationMessagePolicy": "File"})
    expected["initContainers"][0]["resources"] = {}  # Go always writes this struct
    assert copy["metadata"]["name"] == "web-copy"
    assert copy["spec"] == expected
