"""Every error class answers a Kubernetes Status, no input produces a 500, and a
rejected request writes nothing to etcd."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aetcd
import pytest

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str = "web") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def _read_sync(apiserver) -> set[str]:
    """Every key under /registry/ in etcd, read with a raw client."""
    async def read():
        async with aetcd.Client(host="127.0.0.1", port=apiserver.etcd.client_port) as client:
            result = await client.get_prefix(b"/registry/")
            return {kv.key.decode() for kv in result}
    return asyncio.run(read())


@pytest.fixture
def apiserver(reused_apiserver):
    """This module's tests share one server (see tests/integration/conftest.py)."""
    return reused_apiserver


def assert_status(resp, code: int, reason: str) -> dict:
    assert resp.status_code == code, resp.text
    body = resp.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason, body
    return body


def test_not_found_and_already_exists(http):
    assert_status(http.get(f"{PODS}/nope"), 404, "NotFound")
    assert http.post(PODS, json=pod()).status_code == 201
    body = assert_status(http.post(PODS, json=pod()), 409, "AlreadyExists")
    assert body["message"] == 'pods "web" already exists'
    assert body["details"] == {"name": "web", "kind": "pods"}   # an empty group is omitted, as Go's omitempty does


def test_group_resources_name_their_group(http):
    body = assert_status(http.get("/apis/apps/v1/namespaces/default/deployments/x"), 404, "NotFound")
    assert body["message"] == 'deployments.apps "x" not found'


def test_invalid_names_each_field(http, apiserver):
    before = _read_sync(apiserver)
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"image": "busybox"}]}}
    body = assert_status(http.post(PODS, json=bad), 422, "Invalid")
    assert body["message"].startswith('Pod "x" is invalid: ')
    assert any(c["field"] == "spec.containers[0].name" for c in body["details"]["causes"])
    assert body["details"]["kind"] == "Pod"
    assert _read_sync(apiserver) == before


def test_secret_data_must_be_base64(http):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}}
    body = assert_status(http.post("/api/v1/namespaces/default/secrets", json=secret), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "data[k]"


def test_missing_namespace_is_not_found(http, apiserver):
    before = _read_sync(apiserver)
    body = assert_status(http.post("/api/v1/namespaces/ghost/pods", json=pod()), 404, "NotFound")
    assert body["message"] == 'namespaces "ghost" not found'
    assert _read_sync(apiserver) == before


@pytest.mark.parametrize("content,ctype,expected", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"a: [unclosed", "application/yaml", 400),
    (b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b]\n",
     "application/yaml", 400),
    (b"<xml/>", "application/xml", 415),
    (b"k8s\x00\x0a\x05garbage", "application/vnd.kubernetes.protobuf", 400),
    (b"not protobuf at all", "application/vnd.kubernetes.protobuf", 400),
    (b'{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}', "application/json", 400),
    (b'{"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "x"}}', "application/json", 400),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "kube-system"}}',
     "application/json", 400),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": "oops"}', "application/json", 422),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}}', "application/json", 400),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": []}', "application/json", 422),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "a"}}',
     "application/json", 422),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}, "spec": {"containers": []}}',
     "application/json", 422),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {}}', "application/json", 422),
    (b'null', "application/json", 400),
    (b'[' * 100000 + b']' * 100000, "application/json", 400),
    (b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deep"}, "spec": {"containers": [], "x": '
     + b'{"a": ' * 150 + b'1' + b'}' * 150 + b'}}', "application/json", 400),
])
def test_garbage_bodies_are_client_errors_and_write_nothing(http, apiserver, content, ctype, expected):
    before = _read_sync(apiserver)
    resp = http.post(PODS, content=content, headers={"content-type": ctype})
    assert resp.status_code == expected, resp.text
    assert resp.json()["kind"] == "Status"
    assert _read_sync(apiserver) == before


def test_yaml_bodies_are_accepted(http):
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: b\n"
    resp = http.post("/api/v1/namespaces/default/configmaps", content=doc, headers={"content-type": "application/yaml"})
    assert resp.status_code == 201 and resp.json()["data"] == {"a": "b"}


def test_oversized_body_is_413(http, apiserver):
    before = _read_sync(apiserver)
    big = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                      "data": {"a": "x" * (3 * 1024 * 1024 + 10)}}).encode()
    assert_status(http.post("/api/v1/namespaces/default/configmaps", content=big,
                            headers={"content-type": "application/json"}), 413, "RequestEntityTooLarge")
    assert _read_sync(apiserver) == before


def test_name_in_body_must_match_url(http):
    http.post(PODS, json=pod("a"))
    current = http.get(f"{PODS}/a").json()
    current["metadata"]["name"] = "b"
    assert_status(http.put(f"{PODS}/a", json=current), 400, "BadRequest")


def test_unknown_resource_and_method(http):
    assert_status(http.get("/api/v1/namespaces/default/widgets"), 404, "NotFound")
    # outside every served group-version: Go's plain http.NotFound, as kube-apiserver answers
    for path in ("/apis/nothing.io/v1/things", "/not/an/api"):
        resp = http.get(path)
        assert (resp.status_code, resp.text) == (404, "404 page not found\n")
    assert_status(http.post(f"{PODS}/web", json=pod()), 405, "MethodNotAllowed")
    assert_status(http.put(PODS, json=pod()), 405, "MethodNotAllowed")
    assert_status(http.post("/api/v1/pods", json=pod()), 405, "MethodNotAllowed")


def test_bad_selectors_and_parameters_are_400(http):
    assert_status(http.get(PODS, params={"labelSelector": "a in (b"}), 400, "BadRequest")
    body = assert_status(http.get(PODS, params={"fieldSelector": "spec.foo=x"}), 400, "BadRequest")
    assert "field label not supported" in body["message"]
    assert_status(http.get("/api/v1/namespaces/default/configmaps", params={"fieldSelector": "status.phase=x"}),
                  400, "BadRequest")
    assert_status(http.get(PODS, params={"limit": "many"}), 400, "BadRequest")
    assert_status(http.get(PODS, params={"resourceVersion": "abc"}), 400, "BadRequest")
    assert_status(http.get(PODS, params={"resourceVersionMatch": "Exact"}), 400, "BadRequest")
    assert_status(http.get(PODS, params={"continue": "garbage"}), 400, "BadRequest")
    assert_status(http.post(PODS, params={"fieldValidation": "Loose"}, json=pod()), 400, "BadRequest")
    assert_status(http.delete(f"{PODS}/x", params={"propagationPolicy": "Sideways"}), 400, "BadRequest")


def test_bad_patches(http, apiserver):
    http.post(PODS, json=pod())
    before = _read_sync(apiserver)
    merge = {"content-type": "application/merge-patch+json"}
    assert_status(http.patch(f"{PODS}/web", content=b"{oops", headers=merge), 400, "BadRequest")
    assert_status(http.patch(f"{PODS}/web", content=b"[]", headers=merge), 400, "BadRequest")
    assert_status(http.patch(f"{PODS}/web", json={"a": 1}, headers={"content-type": "text/plain"}),
                  415, "UnsupportedMediaType")
    failing = [{"op": "test", "path": "/metadata/name", "value": "other"}]
    assert_status(http.patch(f"{PODS}/web", json=failing, headers={"content-type": "application/json-patch+json"}),
                  422, "Invalid")
    assert_status(http.patch(f"{PODS}/web", json={"kind": "Service"}, headers=merge), 400, "BadRequest")
    assert_status(http.patch(f"{PODS}/web", json={"spec": {"containers": None}}, headers=merge), 422, "Invalid")
    assert_status(http.patch(f"{PODS}/nope", json={}, headers=merge), 404, "NotFound")
    assert _read_sync(apiserver) == before


def test_strict_field_validation_and_warnings(http):
    extra = {**pod("strict"), "spec": {**pod()["spec"], "bogus": 1}}
    strict = http.post(PODS, params={"fieldValidation": "Strict"}, json=extra)
    assert strict.status_code in (400, 422) and "bogus" in strict.json()["message"]
    warned = http.post(PODS, params={"fieldValidation": "Warn"}, json=extra)
    assert warned.status_code == 201
    assert "bogus" in warned.headers.get("warning", "")
    assert "bogus" not in warned.json()["spec"] and "bogus" not in http.get(f"{PODS}/strict").json()["spec"]
    again = http.put(f"{PODS}/strict", json=extra)
    assert again.status_code == 200 and again.json()["metadata"]["generation"] == 1
    assert http.post(PODS, params={"fieldValidation": "Ignore"}, json={**extra, "metadata": {"name": "i"}}).status_code == 201


def test_preconditions_on_delete(http):
    http.post(PODS, json=pod())
    wrong = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "not-the-uid"}}
    body = assert_status(http.request("DELETE", f"{PODS}/web", json=wrong), 409, "Conflict")
    assert "Precondition failed" in body["message"]
    assert http.get(f"{PODS}/web").status_code == 200


def test_put_of_a_missing_object_is_not_found(http):
    assert_status(http.put(f"{PODS}/ghost", json=pod("ghost")), 404, "NotFound")


FUZZ_ROUNDS = int(os.environ.get("PKUBE_FUZZ_ROUNDS", "60"))
FUZZ_SEED = os.environ.get("PKUBE_FUZZ_SEED", "0")
FIELDS = ["metadata", "name", "namespace", "labels", "annotations", "finalizers", "generateName",
          "resourceVersion", "uid", "deletionTimestamp", "ownerReferences", "spec", "status", "containers",
          "image", "ports", "port", "nodePort", "targetPort", "protocol", "selector", "matchLabels",
          "matchExpressions", "template", "replicas", "type", "clusterIP", "clusterIPs", "data",
          "stringData", "nodeName", "phase", "conditions", "strategy", "rollingUpdate", "env",
          "resources", "limits", "requests", "cpu", "memory", "volumes", "target", "involvedObject"]


def random_value(rng, depth: int = 0):
    roll = rng.random()
    if depth > 4 or roll < 0.35:
        return rng.choice([None, True, 0, -1, 2 ** 70, 1.5, "", "x", "web", "Bad_Name!", "é" * 3,
                           "10.96.0.9", "30080", 30080, "None", "NodePort", "aGk="])
    if roll < 0.55:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_object(rng, kind: str, api_version: str):
    obj = random_value(rng)
    if isinstance(obj, dict) and rng.random() < 0.8:
        obj.update(kind=kind, apiVersion=api_version)
        if rng.random() < 0.7:
            given = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            obj["metadata"] = {"name": f"fuzz-{rng.randint(0, 3)}", **given}
    return obj


@pytest.mark.parametrize("collection,kind,api_version", [
    ("/api/v1/namespaces/default/pods", "Pod", "v1"),
    ("/api/v1/namespaces/default/services", "Service", "v1"),
    ("/apis/apps/v1/namespaces/default/deployments", "Deployment", "apps/v1"),
    ("/api/v1/namespaces/default/secrets", "Secret", "v1"),
    ("/api/v1/nodes", "Node", "v1"),
])
def test_random_shapes_never_produce_a_500(http, collection, kind, api_version):
    import random
    rng = random.Random(f"{kind}-fuzz-{FUZZ_SEED}")
    for _ in range(FUZZ_ROUNDS):
        body = random_object(rng, kind, api_version)
        name = f"fuzz-{rng.randint(0, 3)}"
        method, url, ctype = rng.choice([
            ("POST", collection, "application/json"),
            ("PUT", f"{collection}/{name}", "application/json"),
            ("PATCH", f"{collection}/{name}", "application/merge-patch+json"),
            ("PATCH", f"{collection}/{name}", "application/strategic-merge-patch+json"),
            ("PATCH", f"{collection}/{name}/status", "application/merge-patch+json"),
            ("PUT", f"{collection}/{name}/status", "application/json"),
            ("PATCH", f"{collection}/{name}", "application/json-patch+json"),
            ("DELETE", f"{collection}/{name}", "application/json"),
        ])
        if ctype == "application/json-patch+json":
            body = [{"op": rng.choice(["add", "replace", "remove", "test", "move", "copy", "bogus"]),
                     "path": "/" + "/".join(rng.choice(FIELDS) for _ in range(rng.randint(0, 3))),
                     "from": "/metadata", "value": random_value(rng)} for _ in range(rng.randint(0, 3))]
        resp = http.request(method, url, content=json.dumps(body).encode(), headers={"content-type": ctype})
        assert resp.status_code < 500, (method, url, body, resp.text)
        assert resp.json().get("kind") is not None


def test_an_injected_authenticator_guards_every_api_path(etcd_server):
    from pkube.apiserver import errors as api_errors
    from tests.integration.conftest import start_apiserver, stop_apiserver

    async def token_only(request):
        if request.headers.get("authorization") != "Bearer good":
            raise api_errors.unauthorized()
        return "admin"

    thread, api = start_apiserver(etcd_server, authenticator=token_only)
    try:
        with api.client() as anonymous:
            assert_status(anonymous.get(PODS), 401, "Unauthorized")
            assert_status(anonymous.get("/api/v1"), 401, "Unauthorized")
            assert anonymous.get("/readyz").status_code == 200 and anonymous.get("/version").status_code == 200
        with api.client(headers={"authorization": "Bearer good"}) as admin:
            assert admin.post(PODS, json=pod(f"auth-{uuid.uuid4().hex[:8]}")).status_code == 201
    finally:
        stop_apiserver(thread)


def test_an_unreachable_etcd_is_503_and_not_ready(tmp_path):
    from pkube.cluster.etcd import EtcdProcess
    from tests.integration.conftest import start_apiserver, stop_apiserver

    own = EtcdProcess(data_dir=tmp_path / "etcd", log_path=tmp_path / "etcd.log").start()
    thread = None
    try:
        thread, api = start_apiserver(own)
        own.stop()
        with api.client(timeout=60) as client:
            assert client.get("/readyz").status_code == 500
            assert_status(client.get(PODS), 503, "ServiceUnavailable")
            assert_status(client.post(PODS, json=pod("down")), 503, "ServiceUnavailable")
    finally:
        own.stop()
        if thread is not None:
            stop_apiserver(thread)
