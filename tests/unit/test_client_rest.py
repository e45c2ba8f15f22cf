"""Pure parts of the REST client: paths, request building, error translation, watch lines."""

import asyncio
import json

import pytest

from pkube.client.aio import AsyncApiClient
from pkube.client.errors import (AlreadyExists, ApiError, Conflict, Gone, Invalid, NotFound, Unavailable,
                           error_from_response)
from pkube.client.kubeconfig import ClientConfig
from pkube.client.resources import DEPLOYMENTS, LEASES, NODES, PODS, SERVICEACCOUNTS, resource_path
from pkube.client.rest import ApiClient, parse_watch_line


@pytest.mark.parametrize("args,path", [
    ((PODS, "ns1"), "/api/v1/namespaces/ns1/pods"),
    ((PODS, None), "/api/v1/pods"),
    ((PODS, "ns1", "p", "binding"), "/api/v1/namespaces/ns1/pods/p/binding"),
    ((NODES, "ignored", "n1", "status"), "/api/v1/nodes/n1/status"),
    ((DEPLOYMENTS, "d", "web", "scale"), "/apis/apps/v1/namespaces/d/deployments/web/scale"),
    ((LEASES, "kube-system", "sched"), "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sched"),
])
def test_resource_paths(args, path):
    assert resource_path(*args) == path


def test_subresource_without_name_is_refused():
    with pytest.raises(ValueError, match="needs an object name"):
        resource_path(PODS, "ns", None, "status")


@pytest.fixture
def client():
    with ApiClient(ClientConfig("http://127.0.0.1:1", namespace="team")) as c:
        yield c


def test_namespace_comes_from_object_then_context(client):
    in_x = client.create_request(PODS, {"metadata": {"name": "p", "namespace": "x"}})
    assert in_x.path == "/api/v1/namespaces/x/pods"
    assert client.create_request(PODS, {"metadata": {"name": "p"}}).path == "/api/v1/namespaces/team/pods"
    assert client.list_request(PODS).path == "/api/v1/pods"


def test_list_and_watch_parameters(client):
    req = client.list_request(PODS, "a", label_selector="app=web", field_selector="spec.nodeName=n1",
                              limit=10, continue_="tok")
    assert req.params == {"labelSelector": "app=web", "fieldSelector": "spec.nodeName=n1",
                          "limit": 10, "continue": "tok"}
    watch = client.watch_request(PODS, "a", resource_version="42", timeout_seconds=60)
    assert watch.params == {"watch": "1", "resourceVersion": "42", "timeoutSeconds": 60,
                            "allowWatchBookmarks": "true"}


def test_patch_content_types_and_bad_type(client):
    assert client.patch_request(PODS, "p", {}, patch_type="strategic").content_type == \
        "application/strategic-merge-patch+json"
    assert client.patch_request(PODS, "p", [], patch_type="json").content_type == "application/json-patch+json"
    with pytest.raises(ValueError, match="patch_type"):
        client.patch_request(PODS, "p", {}, patch_type="yaml")


def test_delete_options_body(client):
    req = client.delete_request(PODS, "p", "ns", propagation_policy="Foreground", grace_period_seconds=0,
                                preconditions={"uid": "u1"})
    assert req.method == "DELETE" and req.path == "/api/v1/namespaces/ns/pods/p"
    assert req.body == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                        "gracePeriodSeconds": 0, "preconditions": {"uid": "u1"}}


def test_binding_request(client):
    req = client.bind_request({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}, "node-1")
    assert req.path == "/api/v1/namespaces/ns/pods/p/binding"
    assert req.body["target"] == {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
    assert req.body["metadata"] == {"name": "p", "namespace": "ns", "uid": "u"}


def status(code, reason):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason,
                       "message": f"{reason} happened"}).encode()


@pytest.mark.parametrize("code,reason,cls", [
    (404, "NotFound", NotFound), (409, "AlreadyExists", AlreadyExists), (409, "Conflict", Conflict),
    (410, "Gone", Gone), (422, "Invalid", Invalid), (403, "Forbidden", ApiError)])
def test_status_errors_become_typed_exceptions(code, reason, cls):
    err = error_from_response(code, status(code, reason))
    assert type(err) is cls and err.code == code and err.reason == reason
    assert err.message == f"{reason} happened"


def test_non_status_body_is_kept_as_message():
    err = error_from_response(502, b"bad gateway")
    assert (err.code, err.reason, err.message) == (502, "Unknown", "bad gateway")


def test_watch_lines():
    assert parse_watch_line('{"type":"ADDED","object":{"metadata":{"name":"a"}}}') == \
        ("ADDED", {"metadata": {"name": "a"}})
    assert parse_watch_line("  ") is None
    with pytest.raises(Gone):
        parse_watch_line(json.dumps({"type": "ERROR", "object": json.loads(status(410, "Expired"))}))


def test_unreachable_server_raises_unavailable(client):
    with pytest.raises(ApiError) as err:
        client.get(PODS, "p")
    assert err.value.code == 503


def test_token_is_sent_as_bearer_and_absent_without_one():
    with ApiClient(ClientConfig("http://127.0.0.1:1", token="s3cret")) as with_token:
        assert with_token.http.headers["Authorization"] == "Bearer s3cret"
    with ApiClient(ClientConfig("http://127.0.0.1:1")) as anonymous:
        assert "Authorization" not in anonymous.http.headers


async def serve_once(answer: bytes):
    """A local HTTP server answering every request with the raw bytes ``answer`` (nothing if empty);
    returns (server, url, the request heads it received)."""
    heads = []

    async def handle(reader, writer):
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        if answer:
            writer.write(answer)
            await writer.drain()
            writer.close()
        else:
            await reader.read()                 # hold the connection, never answer

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_async_request_without_answer_times_out_as_unavailable():
    async def main():
        server, url, _ = await serve_once(b"")
        async with server, AsyncApiClient(ClientConfig(url), timeout=0.2) as api:
            with pytest.raises(Unavailable):
                await api.get(PODS, "p", "default")
    run(main())


def test_async_client_sends_the_token_and_translates_errors():
    body = status(404, "NotFound")
    answer = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def main():
        server, url, heads = await serve_once(answer)
        async with server, AsyncApiClient(ClientConfig(url, token="s3cret")) as api:
            with pytest.raises(NotFound):
                await api.get(PODS, "p", "default")
        return heads[0].decode().lower()
    head = run(main())
    assert head.startswith("get /api/v1/namespaces/default/pods/p ")
    assert "authorization: bearer s3cret" in head


def test_async_create_subresource_posts_to_the_objects_subresource():
    body = json.dumps({"kind": "TokenRequest", "status": {"token": "t"}}).encode()
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def main():
        server, url, heads = await serve_once(answer)
        async with server, AsyncApiClient(ClientConfig(url)) as api:
            answered = await api.create_subresource(SERVICEACCOUNTS, "robot", "token",
                                                    {"kind": "TokenRequest", "spec": {}}, "shop")
        return answered, heads[0].decode().lower()
    answered, head = run(main())
    assert answered["status"]["token"] == "t"
    assert head.startswith("post /api/v1/namespaces/shop/serviceaccounts/robot/token ")


def test_async_watch_answering_410_raises_gone():
    body = status(410, "Expired")
    answer = (b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def main():
        server, url, heads = await serve_once(answer)
        async with server, AsyncApiClient(ClientConfig(url)) as api:
            with pytest.raises(Gone):
                async for _ in api.watch(PODS, "default", resource_version="5"):
                    pass
        return heads[0].decode()
    assert "watch=1" in run(main())
