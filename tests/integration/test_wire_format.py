"""pkube's bodies byte for byte as Kubernetes writes them: every class of error, the Status of
a delete, list metadata, watch events.

There is no real Kubernetes here, so each expected body is built from upstream's source, and
the comment above it says where from. What all of them share:

- ``metav1.Status`` (k8s.io/apimachinery/pkg/apis/meta/v1/types.go) encodes its fields in Go
  struct order with ``omitempty``: kind, apiVersion, metadata (ListMeta, a struct: always
  ``{}``), status, message, reason, details (a pointer: present when non-nil, even empty),
  code. ``StatusDetails``: name, group, kind, uid, causes, retryAfterSeconds, all omitempty;
  ``StatusCause``: reason, message, field.
- kube-apiserver writes JSON with ``json.NewEncoder(w).Encode(obj)``
  (apimachinery pkg/runtime/serializer/json/json.go ``doEncode``): compact, ``<``, ``>``,
  ``&`` escaped as ``\\u003c`` ``\\u003e`` ``\\u0026`` (SetEscapeHTML's default), and a
  trailing newline.
- Errors go through responsewriters.ErrorNegotiated → ErrorToAPIStatus (apiserver
  pkg/endpoints/handlers/responsewriters/status.go), which sets kind Status, apiVersion v1.
"""

from __future__ import annotations

import json

import pytest

from pkube.apiserver import errors
from pkube.apiserver import eviction as evictions
from pkube.apiserver.auth.attributes import non_resource_attributes, resource_attributes
from pkube.apiserver.auth.authorizer import forbidden
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.encoding import error_response
from pkube.apiserver.inflight import too_many_requests
from pkube.apiserver.watch import EventEncoder
from tests.integration.test_crds import CRDS, GROUP, established, widget_crd
from tests.integration.test_crds import kubectl, kubectl_binaries  # noqa: F401 - the fixture

CMS = "/api/v1/namespaces/default/configmaps"
HEAD = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
RFC1123 = (b"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
           b"and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
           b"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.fixture
def apiserver(reused_apiserver):
    return reused_apiserver


def configmap(name: str, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_not_found(http):
    # errors.go NewNotFound(GroupResource{"", "configmaps"}, "nope"): Details{Group, Kind, Name},
    # Message "%s %q not found"; the empty group is omitted.
    resp = http.get(f"{CMS}/nope")
    assert resp.status_code == 404
    assert resp.content == HEAD + (b'"message":"configmaps \\"nope\\" not found","reason":"NotFound",'
                                   b'"details":{"name":"nope","kind":"configmaps"},"code":404}\n')
    # The same for a named group: GroupResource.String() is "deployments.apps".
    resp = http.get("/apis/apps/v1/namespaces/default/deployments/x")
    assert resp.content == HEAD + (b'"message":"deployments.apps \\"x\\" not found","reason":"NotFound",'
                                   b'"details":{"name":"x","group":"apps","kind":"deployments"},"code":404}\n')


def test_already_exists_and_conflict(http):
    created = http.post(CMS, json=configmap("web"))
    assert created.status_code == 201
    # errors.go NewAlreadyExists: Message "%s %q already exists", code 409.
    resp = http.post(CMS, json=configmap("web"))
    assert resp.content == HEAD + (b'"message":"configmaps \\"web\\" already exists","reason":"AlreadyExists",'
                                   b'"details":{"name":"web","kind":"configmaps"},"code":409}\n')
    # errors.go NewConflict with storage's OptimisticLockErrorMsg
    # (apiserver pkg/storage/errors.go, registry Store.Update on a stale resourceVersion).
    stale = created.json()
    stale["metadata"]["resourceVersion"] = "1"
    resp = http.put(f"{CMS}/web", json=stale)
    assert resp.content == HEAD + (b'"message":"Operation cannot be fulfilled on configmaps \\"web\\": the object '
                                   b'has been modified; please apply your changes to the latest version and try '
                                   b'again","reason":"Conflict","details":{"name":"web","kind":"configmaps"},'
                                   b'"code":409}\n')


def test_invalid_with_causes(http):
    # errors.go NewInvalid(GroupKind{"", "ConfigMap"}, name, errs): one cause per field error
    # (reason = field.ErrorType, message = ErrorBody(), field); Message "%s %q is invalid: %v"
    # with the aggregate (one error: no brackets). The name rule's text is
    # apimachinery pkg/util/validation/validation.go IsDNS1123Subdomain (RegexError).
    resp = http.post(CMS, json=configmap("Bad_Name"))
    body = b'Invalid value: \\"Bad_Name\\": ' + RFC1123
    assert resp.content == HEAD + (b'"message":"ConfigMap \\"Bad_Name\\" is invalid: metadata.name: ' + body
                                   + b'","reason":"Invalid","details":{"name":"Bad_Name","kind":"ConfigMap",'
                                   b'"causes":[{"reason":"FieldValueInvalid","message":"' + body
                                   + b'","field":"metadata.name"}]},"code":422}\n')


def test_bad_request(http):
    # apiserver pkg/endpoints/handlers/rest.go: NewBadRequest("the name of the object (%s) does not
    # match the name on the URL (%s)"): no details.
    http.post(CMS, json=configmap("a"))
    resp = http.put(f"{CMS}/a", json=configmap("b"))
    assert resp.content == HEAD + (b'"message":"the name of the object (b) does not match the name on the URL (a)",'
                                   b'"reason":"BadRequest","code":400}\n')


def test_method_not_allowed_and_unknown_resources(http):
    # No route for the method: go-restful's 405 goes to kube-apiserver's serviceErrorHandler
    # (apiserver pkg/server/handler.go), NewGenericServerResponse(405, "", GroupResource{}, "", msg,
    # 0, false): its fixed message, non-nil empty details.
    resp = http.post(f"{CMS}/x", json=configmap("x"))
    assert resp.status_code == 405
    assert resp.content == HEAD + (b'"message":"the server does not allow this method on the requested resource",'
                                   b'"reason":"MethodNotAllowed","details":{},"code":405}\n')
    # No route for the path under a served group version: the same handler with 404.
    resp = http.get("/api/v1/namespaces/default/nosuchthings")
    assert resp.content == HEAD + (b'"message":"the server could not find the requested resource",'
                                   b'"reason":"NotFound","details":{},"code":404}\n')


@pytest.mark.parametrize("path", ["/apis/nope.example.com/v1/widgets", "/apis/nope.example.com/v1",
                                  "/apis/nope.example.com", "/apis/apps/v9/deployments", "/api/v2", "/nowhere"])
def test_paths_outside_every_served_group_version_are_gos_plain_not_found(http, path):
    # Outside every group-version go-restful serves, kube-apiserver's chain ends in its
    # notfoundhandler, which calls Go's http.NotFound: plain text, no Status.
    resp = http.get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.content == b"404 page not found\n"


def test_unsupported_media_type(http):
    # A body in an unknown format: negotiation.NewUnsupportedMediaTypeError(supported) (apiserver
    # pkg/endpoints/handlers/negotiation/errors.go) from NegotiateInputSerializer; the serializers'
    # types of a 1.32 apiserver; a Status with no details.
    resp = http.post(CMS, content=b"name: x", headers={"Content-Type": "text/plain"})
    assert resp.content == HEAD + (b'"message":"the body of the request was in an unknown format - accepted media '
                                   b'types include: application/json, application/yaml, '
                                   b'application/vnd.kubernetes.protobuf","reason":"UnsupportedMediaType",'
                                   b'"code":415}\n')
    # A PATCH of an unknown patch type: the route Consumes only the patch types (installer.go),
    # so go-restful refuses it ("415: Unsupported Media Type") and serviceErrorHandler writes
    # NewGenericServerResponse(415, ...), whose message is the server's.
    http.post(CMS, json=configmap("p"))
    resp = http.patch(f"{CMS}/p", content=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.content == HEAD + (b'"message":"415: Unsupported Media Type","reason":"UnsupportedMediaType",'
                                   b'"details":{},"code":415}\n')


def test_not_acceptable(http):
    # An Accept header naming nothing the route Produces (installer.go: the serializers' types):
    # go-restful's "406: Not Acceptable" through serviceErrorHandler (NewGenericServerResponse
    # keeps a 406's server message).
    resp = http.get(CMS, headers={"Accept": "text/html"})
    assert resp.status_code == 406
    assert resp.content == HEAD + (b'"message":"406: Not Acceptable","reason":"NotAcceptable","details":{},'
                                   b'"code":406}\n')


def test_delete_answers_a_status_success(http):
    # registry Store.finalizeDelete (apiserver pkg/registry/generic/registry/store.go) for a store
    # without ReturnDeletedObject (configmaps): Status{Status: Success, Details{Name, Group, Kind:
    # the resource, UID}}; no code, message or reason.
    uid = http.post(CMS, json=configmap("gone")).json()["metadata"]["uid"]
    resp = http.delete(f"{CMS}/gone")
    assert resp.status_code == 200
    assert resp.content == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":'
                            b'{"name":"gone","kind":"configmaps","uid":"' + uid.encode() + b'"}}\n')
    # Pods' store has ReturnDeletedObject: the object comes back.
    assert http.post("/api/v1/namespaces/default/pods", json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).status_code == 201
    assert http.delete("/api/v1/namespaces/default/pods/p", params={"gracePeriodSeconds": "0"}).json()["kind"] == "Pod"


def test_list_metadata_and_html_escaping(http):
    # A typed list: TypeMeta, ListMeta (resourceVersion only, omitempty), items
    # (apimachinery pkg/runtime/serializer/json/collections.go encodeList); strings escaped
    # as Go's encoder escapes them; a trailing newline.
    created = http.post(CMS, json=configmap("html", page="<a href='x'>&</a>")).json()
    resp = http.get(CMS)
    rv = resp.json()["metadata"]["resourceVersion"]
    assert resp.content.startswith(b'{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"'
                                   + rv.encode() + b'"},"items":[{')
    assert resp.content.endswith(b"]}\n")
    assert b"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e" in resp.content
    single = http.get(f"{CMS}/html")
    assert single.content.endswith(b"}\n") and b"<" not in single.content
    assert created["data"]["page"] == "<a href='x'>&</a>"


def test_watch_events_are_lines_of_type_and_object(http):
    # watch.Event as metav1.WatchEvent {"type","object"}, one JSON document per line
    # (apiserver pkg/endpoints/handlers/watch.go through the JSON framer).
    first = http.post(CMS, json=configmap("w", v="a&b")).json()
    rv = int(first["metadata"]["resourceVersion"]) - 1
    with http.stream("GET", CMS, params={"watch": "1", "resourceVersion": str(rv), "timeoutSeconds": "2"}) as resp:
        line = next(resp.iter_lines())
    assert line.startswith('{"type":"ADDED","object":{') and "a\\u0026b" in line


def test_errors_raised_outside_a_served_route():
    # authentication's failure (apiserver pkg/endpoints/filters/authentication.go unauthorized):
    # NewUnauthorized("Unauthorized"): no details.
    assert error_response(errors.unauthorized()).body == HEAD + (
        b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n')
    # responsewriters.ForbiddenStatusError: forbiddenMessage (quotes kept, &<> sanitized as HTML
    # entities), NewForbidden(GroupResource{group, resource}, name, err): "%s is forbidden: %v".
    alice = UserInfo("alice", groups=("system:authenticated",))
    denied = forbidden(resource_attributes(alice, "list", "", "v1", "default", "pods"))
    assert error_response(denied).body == HEAD + (
        b'"message":"pods is forbidden: User \\"alice\\" cannot list resource \\"pods\\" in API group \\"\\" in '
        b'the namespace \\"default\\"","reason":"Forbidden","details":{"kind":"pods"},"code":403}\n')
    named = forbidden(resource_attributes(alice, "get", "apps", "v1", "", "deployments", name="<x>"))
    assert error_response(named).body == HEAD + (
        b'"message":"deployments.apps \\"\\u003cx\\u003e\\" is forbidden: User \\"alice\\" cannot get resource '
        b'\\"deployments\\" in API group \\"apps\\" at the cluster scope","reason":"Forbidden",'
        b'"details":{"name":"\\u003cx\\u003e","group":"apps","kind":"deployments"},"code":403}\n')
    # A non-resource URL: an empty GroupResource, so "forbidden: %v" and empty (non-nil) details.
    path = forbidden(non_resource_attributes(alice, "get", "/metrics"))
    assert error_response(path).body == HEAD + (
        b'"message":"forbidden: User \\"alice\\" cannot get path \\"/metrics\\"","reason":"Forbidden",'
        b'"details":{},"code":403}\n')


def test_expired_and_too_many_requests():
    # The watch cache's errors.NewResourceExpired("too old resource version: %d (%d)") as a watch
    # ERROR event: metav1.WatchEvent{Type: "ERROR", Object: the Status}, one line.
    expired = errors.expired("too old resource version: 1 (5)")
    assert EventEncoder().encode("ERROR", expired.status()) == (
        b'{"type":"ERROR","object":' + HEAD + b'"message":"too old resource version: 1 (5)","reason":"Expired",'
        b'"code":410}}\n')
    assert error_response(errors.gone("gone")).body == HEAD + b'"message":"gone","reason":"Gone","code":410}\n'
    # The max-in-flight filter (apiserver pkg/server/filters/maxinflight.go, tooManyRequests in
    # priority-and-fairness.go): http.Error(w, "Too many requests, please try again later.", 429),
    # text/plain with Retry-After, not a Status.
    refused = error_response(too_many_requests())
    assert refused.body == b"Too many requests, please try again later.\n"
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert refused.headers["retry-after"] == "1" and refused.headers["x-content-type-options"] == "nosniff"
    # An eviction a budget refuses (kubernetes pkg/registry/core/pod/storage/eviction.go):
    # errors.NewTooManyRequests(message, 0) (retryAfterSeconds 0: omitted) plus a DisruptionBudget cause.
    budget = evictions.too_many_requests("The disruption budget b needs 1 healthy pods and has 1 currently")
    assert error_response(budget).body == HEAD + (
        b'"message":"Cannot evict pod as it would violate the pod\'s disruption budget.","reason":"TooManyRequests",'
        b'"details":{"causes":[{"reason":"DisruptionBudget","message":"The disruption budget b needs 1 healthy '
        b'pods and has 1 currently"}]},"code":429}\n')


def test_real_kubectl_reads_the_delete_status_and_the_errors(kubectl, http):  # noqa: F811 - the fixture
    # kubectl 1.32 and 1.37 on the Status Success of a delete, a NotFound and the 405.
    assert http.post(CMS, json=configmap("k")).status_code == 201
    deleted = kubectl("delete", "configmap", "k")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith('configmap "k" deleted')      # 1.37 adds "from default namespace"
    missing = kubectl("get", "configmap", "k")
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): configmaps "k" not found'
    refused = kubectl("create", "--raw", f"{CMS}/k", "-f", "-", stdin="{}")
    assert refused.returncode == 1
    assert "the server does not allow this method on the requested resource" in refused.stderr


def go_unstructured(value) -> bytes:
    """``value`` as Go's encoding/json writes a map[string]interface{}: keys sorted, compact,
    <, >, & escaped (json.Marshal's escapeHTML), a trailing newline from Encoder.Encode."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode() + b"\n"


@pytest.fixture
def gadgets(http):
    """A CRD of its own (the apiserver is shared), deleted afterwards."""
    crd = widget_crd()
    crd["metadata"]["name"] = f"gadgets.{GROUP}"
    crd["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"}
    assert http.post(CRDS, json=crd).status_code == 201
    established(http, f"gadgets.{GROUP}")
    yield f"/apis/{GROUP}/v1/namespaces/default/gadgets"
    http.delete(f"{CRDS}/gadgets.{GROUP}")


def test_custom_objects_are_written_as_unstructured_with_sorted_keys(http, gadgets):
    # apiextensions-apiserver serves custom objects as unstructured.Unstructured; their JSON
    # is json.NewEncoder(w).Encode(map[string]interface{}) (apimachinery pkg/apis/meta/v1/
    # unstructured/helpers.go UnstructuredJSONScheme.doEncode), and Go sorts map keys at every level.
    body = {"kind": "Gadget", "apiVersion": f"{GROUP}/v1", "metadata": {"name": "g", "labels": {"z": "1", "a": "2"},
                                                                  "annotations": {"note": "<&>"}},
            "spec": {"size": "small", "extra": {"b": 1, "a": 2}}}
    created = http.post(gadgets, json=body)
    assert created.status_code == 201, created.text
    assert created.content == go_unstructured(created.json())
    assert created.content.startswith(b'{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{')
    got = http.get(f"{gadgets}/g")
    assert got.content == go_unstructured(got.json())
    patched = http.patch(f"{gadgets}/g/status", json={"status": {"phase": "Up"}},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert patched.content == go_unstructured(patched.json())
    # A list is the UnstructuredList's map: apiVersion, items, kind, metadata; its SetContinue
    # and SetResourceVersion (the registry's list) set metadata.continue even when empty.
    listed = http.get(gadgets)
    rv = listed.json()["metadata"]["resourceVersion"]
    item = go_unstructured(listed.json()["items"][0])[:-1]
    assert listed.content == (b'{"apiVersion":"example.com/v1","items":[' + item + b'],"kind":"GadgetList",'
                              b'"metadata":{"continue":"","resourceVersion":"' + rv.encode() + b'"}}\n')
    # Watch events: metav1.WatchEvent (a struct: type, object) around the unstructured object.
    with http.stream("GET", gadgets, params={"watch": "1", "timeoutSeconds": "2"}) as resp:
        line = next(resp.iter_lines())
    assert line.encode() == b'{"type":"ADDED","object":' + item + b"}"
    # The Scale of a custom resource is the typed autoscaling/v1 Scale: struct order.
    assert http.get(f"{gadgets}/g/scale").content.startswith(b'{"kind":"Scale","apiVersion":"autoscaling/v1",')
    # Built-in kinds are not sorted (metadata in ObjectMeta's field order).
    assert b'"metadata":{"name":"typed","namespace":"default","uid":' in http.post(CMS, json=configmap("typed")).content
