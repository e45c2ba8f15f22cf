"""A real operator framework against `pkube up`: a small kopf operator that answers each
Widget custom resource with a ConfigMap it owns, reports in the Widget's status, and whose
ConfigMap the garbage collector removes with the Widget."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

GROUP = "kopf.example.com"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"greeting": {"type": "string"}}},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
OPERATOR = f'''
import kopf


@kopf.on.create("{GROUP}", "v1", "widgets")
def make_configmap(spec, name, namespace, body, **_):
    configmap = {{"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {{"name": f"{{name}}-greeting"}},
                  "data": {{"greeting": spec.get("greeting", "hello")}}}}
    kopf.adopt(configmap, owner=body)
    import kubernetes
    kubernetes.config.load_kube_config()
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, configmap)
    return {{"configmap": configmap["metadata"]["name"]}}
'''


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout}s")


@pytest.fixture
def apis(cluster):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.ApiextensionsV1Api(api_client), client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def operator(cluster, apis, tmp_path):
    """The CRD installed and the kopf operator running (standalone); both removed afterwards."""
    extensions, _, _ = apis
    extensions.create_custom_resource_definition(CRD)

    def established():
        crd = extensions.read_custom_resource_definition(f"widgets.{GROUP}")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
    wait_for(established, timeout=10)
    script = tmp_path / "operator.py"
    script.write_text(textwrap.dedent(OPERATOR))
    log = open(tmp_path / "kopf.log", "w")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", str(script), "--standalone", "--namespace",
                             "default"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        extensions.delete_custom_resource_definition(f"widgets.{GROUP}")
        print((tmp_path / "kopf.log").read_text()[-4000:])


def test_kopf_operator_creates_an_owned_configmap_and_reports_status(apis, operator):
    _, custom, core = apis
    widget = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "hello"},
              "spec": {"greeting": "bonjour"}}
    created = custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget)

    def configmap():
        found = [c for c in core.list_namespaced_config_map("default").items if c.metadata.name == "hello-greeting"]
        return found[0] if found else None
    made = wait_for(configmap)
    assert made.data == {"greeting": "bonjour"}
    assert [(r.kind, r.uid) for r in made.metadata.owner_references] == [("Widget", created["metadata"]["uid"])]

    def reported():
        status = custom.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", "hello").get("status") or {}
        return status.get("make_configmap")
    assert wait_for(reported) == {"configmap": "hello-greeting"}

    custom.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "hello")
    wait_for(lambda: configmap() is None)
    assert operator.poll() is None, "the operator exited"
