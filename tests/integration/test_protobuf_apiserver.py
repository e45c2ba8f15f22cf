"""The real kubectl's protobuf-sending commands create what the user asked for on our apiserver."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from tests.helpers.kubeconfig import write_kubeconfig

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def kubectl(apiserver, tmp_path):
    """Run the real kubectl against a fresh apiserver; returns the CompletedProcess."""
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", str(config), *args], env=env,
                              capture_output=True, text=True, timeout=60)
    return run


def get_json(kubectl, *args: str) -> dict:
    done = kubectl("get", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_create_deployment_keeps_replicas_zero_command_and_port(kubectl):
    assert kubectl("create", "deployment", "z", "--image=busybox", "--replicas=0").returncode == 0
    created = kubectl("create", "deployment", "d", "--image=busybox", "--replicas=3",
                      "--port=80", "--", "sleep", "10")
    assert created.returncode == 0, created.stderr

    assert get_json(kubectl, "deploy", "z")["spec"]["replicas"] == 0
    container = get_json(kubectl, "deploy", "d")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sleep", "10"]
    assert container["ports"][0]["containerPort"] == 80


def test_create_service_and_serviceaccount(kubectl):
    for args in (("create", "service", "clusterip", "x", "--tcp=80:8080", "--tcp=443:https"),
                 ("create", "serviceaccount", "robot")):
        done = kubectl(*args)
        assert done.returncode == 0, (args, done.stderr)

    service = get_json(kubectl, "svc", "x")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == \
        [(80, 8080), (443, "https")]
    assert service["spec"]["clusterIP"]
    assert get_json(kubectl, "sa", "robot")["metadata"]["name"] == "robot"


def test_create_secret_from_binary_file_keeps_the_bytes(kubectl, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)))

    done = kubectl("create", "secret", "generic", "bin", f"--from-file=blob={blob}")

    assert done.returncode == 0, done.stderr
    data = get_json(kubectl, "secret", "bin")["data"]
    assert base64.b64decode(data["blob"]) == bytes(range(256))


def test_debug_node_creates_the_host_pod(kubectl, tmp_path):
    node = tmp_path / "node.json"
    node.write_text(json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
    assert kubectl("create", "-f", str(node)).returncode == 0

    done = kubectl("debug", "node/n1", "--image=busybox")

    assert done.returncode == 0, done.stderr
    pod = get_json(kubectl, "pods")["items"][0]
    assert pod["spec"]["nodeName"] == "n1"
    assert pod["spec"]["hostPID"] and pod["spec"]["hostNetwork"]
    assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/"
