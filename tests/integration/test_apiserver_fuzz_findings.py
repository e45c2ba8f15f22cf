"""One test per class of bad input the fuzzer (tests/helpers/fuzzing.py, bench/fuzz.py) found,
each with the exact answer now given:

- an unknown field whose name is not ASCII, or holds a control character, echoed in the Warning
  header: a 500 ('latin-1' codec can't encode) or a dropped connection (uvicorn refuses a
  control character in a header); now 2xx, the name in the header as UTF-8 bytes, as
  kube-apiserver writes it, control characters as spaces;
- a metadata.generateName that is not a string (a number, a list): a 500 (the name generator
  sliced it); now 400 with kube-apiserver's decoding message;
- a Service update whose spec.ports is not a list (a number), or whose spec is not an object (a
  string): a 500 (the allocations' carrier iterated or set fields in it); now the same 422 as a
  create with it;
- a body shorter than its Content-Length (the client gave up): logged as an unhandled error
  with a 500; now 400 with a message;
- and the one 5xx that is Kubernetes' own design: a read at a resourceVersion the store has not
  reached answers 504 Timeout 'Too large resource version' after waiting for it.
"""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from pkube.apiserver.encoding import read_body
from pkube.apiserver.errors import ApiError

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture
def apiserver(reused_apiserver):
    return reused_apiserver


def warning_bytes(response) -> bytes:
    return b", ".join(value for key, value in response.headers.raw if key.lower() == b"warning")


def test_an_unknown_field_named_in_unicode_is_warned_about_in_utf8(http):
    made = http.post(CONFIGMAPS, json={"metadata": {"name": "u"}, "é𪡃": 1})
    assert made.status_code == 201, made.text
    assert warning_bytes(made) == '299 - "unknown field \\"é𪡃\\""'.encode()
    patched = http.patch(f"{CONFIGMAPS}/u", json={"data": {"a": "b"}, "ünknown": {}}, headers=SMP)
    assert patched.status_code == 200, patched.text
    assert warning_bytes(patched) == '299 - "unknown field \\"ünknown\\""'.encode()


def test_an_unknown_field_with_control_characters_is_warned_about_with_spaces(http):
    patched = http.post(CONFIGMAPS, json={"metadata": {"name": "c"}, "a\r\nSet-Cookie: x\u0000\u007f\\": 1})
    assert patched.status_code == 201, patched.text
    assert warning_bytes(patched) == b'299 - "unknown field \\"a  Set-Cookie: x  \\\\\\""'
    assert b"set-cookie" not in [key.lower() for key, _ in patched.headers.raw]


@pytest.mark.parametrize("value, json_type", [(2147483648, "number"), ([], "array"), ({"a": 1}, "object"), (True, "bool")])
def test_a_generate_name_that_is_not_a_string_is_a_bad_request(http, value, json_type):
    made = http.post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
                     json={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"generateName": value}})
    assert (made.status_code, made.json()["reason"], made.json()["message"]) == (400, "BadRequest", (
        'Role in version "v1" cannot be handled as a Role: json: cannot unmarshal '
        f"{json_type} into Go struct field ObjectMeta.metadata.generateName of type string"))


def test_a_service_update_with_ports_not_a_list_is_refused_as_its_create_is(http):
    services = "/api/v1/namespaces/default/services"
    made = http.post(services, json={"metadata": {"name": "p"}, "spec": {"ports": [{"port": 80}], "type": "NodePort"}})
    assert made.status_code == 201, made.text
    broken = {**made.json(), "spec": {**made.json()["spec"], "ports": 7}}
    updated = http.put(f"{services}/p", json=broken)
    created = http.post(services, json={**broken, "metadata": {"name": "q"}})
    assert updated.status_code == created.status_code == 422, (updated.text, created.text)
    assert updated.json()["message"] == created.json()["message"].replace('"q"', '"p"')
    assert updated.json()["message"] == 'Service "p" is invalid: spec.ports: Invalid value: 7: spec.ports in body must be of type array: "integer"'


def test_a_service_update_with_a_spec_not_an_object_is_refused_as_its_create_is(http):
    services = "/api/v1/namespaces/default/services"
    made = http.post(services, json={"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    assert made.status_code == 201, made.text
    broken = {**made.json(), "spec": "é" * 10}
    updated = http.put(f"{services}/s", json=broken)
    created = http.post(services, json={**broken, "metadata": {"name": "t"}})
    assert updated.status_code == created.status_code == 422, (updated.text, created.text)
    assert updated.json()["message"] == created.json()["message"].replace('"t"', '"s"')


def test_a_body_shorter_than_its_content_length_is_a_bad_request_not_a_server_error():
    """uvicorn reports the client gone (http.disconnect) before the body is whole; the answer
    goes nowhere, but it is a client's error, not an unhandled server error."""
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"99999")]}, receive)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_body(request))
    assert (refused.value.code, refused.value.reason, refused.value.message) == \
        (400, "BadRequest", "the client closed the connection before sending the whole body")


def test_a_read_at_a_future_resource_version_is_kubernetes_504_timeout(http):
    current = int(http.get(CONFIGMAPS).json()["metadata"]["resourceVersion"])
    answer = http.get(CONFIGMAPS, params={"resourceVersion": str(current + 1000)})
    status = answer.json()
    assert (answer.status_code, status["reason"]) == (504, "Timeout")
    assert status["message"].startswith(f"Too large resource version: {current + 1000}, current: ")
