"""API aggregation against a real etcd + apiserver: the Local APIServices of the built-in
groups, and an extension apiserver (a tiny HTTPS app on loopback, written here) registered by
an APIService and reached through a Service + Endpoints, with the real kubectl (1.32 and 1.37)
and the official client."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import threading
import time

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from pkube.cluster.etcd import free_port
from tests.helpers.waiting import wait_for
from tests.integration.test_crds import kubectl, kubectl_binaries  # noqa: F401 - the fixture

GROUP, VERSION = "wardle.example.com", "v1alpha1"
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wardle", "namespace": "default"},
           "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}


def self_signed(tmp_path) -> tuple[str, str, bytes]:
    """(cert file, key file, cert PEM) for wardle.default.svc and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wardle.default.svc")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("wardle.default.svc"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.crt").write_bytes(pem)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), pem


def flunder(name: str, request: Request) -> dict:
    """A Flunder that records who the aggregator said the caller was."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Flunder",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "annotations": {"remote-user": request.headers.get("x-remote-user", ""),
                                         "remote-groups": ",".join(request.headers.getlist("x-remote-group"))}}}


def extension_app() -> Starlette:
    """/apis/wardle.example.com/v1alpha1 discovery and a namespaced flunders list (and watch)."""
    async def discovery(request: Request):
        return JSONResponse({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                             "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": True,
                                            "kind": "Flunder", "verbs": ["get", "list", "watch"]}]})

    async def flunders(request: Request):
        if request.query_params.get("watch") in ("1", "true"):
            async def events():
                for name in ("w1", "w2"):
                    yield (json.dumps({"type": "ADDED", "object": flunder(name, request)}) + "\n").encode()
                    await asyncio.sleep(0.2)
                await asyncio.sleep(30)       # a watch stays open: the client ends it
            return StreamingResponse(events(), media_type="application/json")
        return JSONResponse({"kind": "FlunderList", "apiVersion": f"{GROUP}/{VERSION}",
                             "metadata": {"resourceVersion": "1"}, "items": [flunder("f1", request)]})

    return Starlette(routes=[Route(f"/apis/{GROUP}/{VERSION}", discovery),
                             Route(f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/flunders", flunders)])


@pytest.fixture
def extension(tmp_path):
    """The extension apiserver on 127.0.0.1 over HTTPS; yields (port, cert PEM)."""
    cert, key, pem = self_signed(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(extension_app(), host="127.0.0.1", port=port, log_level="warning",
                                           ssl_certfile=cert, ssl_keyfile=key, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    try:
        yield port, pem
    finally:
        server.should_exit = True
        thread.join(10)


def apiservice(pem: bytes, **spec) -> dict:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"{VERSION}.{GROUP}"},
            "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 1000, "versionPriority": 15,
                     "service": {"namespace": "default", "name": "wardle", "port": 443},
                     "caBundle": base64.b64encode(pem).decode(), **spec}}


def available(http, name: str) -> dict:
    conditions = (http.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}").json().get("status") or {})
    return next((c for c in conditions.get("conditions") or [] if c["type"] == "Available"), {})


def wait_available(http, name: str, status: str, reason: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        condition = available(http, name)
        if condition.get("status") == status and condition.get("reason") == reason:
            return condition
        time.sleep(0.2)
    raise AssertionError(f"{name} never became Available={status} ({reason}): {available(http, name)}")


LOCAL = {"v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.apiextensions.k8s.io", "v1.apiregistration.k8s.io"}


def local_apiservices(http) -> dict:
    """The APIServices once the Local ones are all there."""
    def listed():
        found = {s["metadata"]["name"]: s for s in http.get("/apis/apiregistration.k8s.io/v1/apiservices").json()["items"]}
        return found if LOCAL <= set(found) else None
    return wait_for(listed)


def test_local_apiservices_as_kubernetes_lists_them(http):
    listed = local_apiservices(http)
    apps = listed["v1.apps"]
    assert apps["spec"] == {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15}
    assert listed["v1."]["spec"]["groupPriorityMinimum"] == 18000
    condition = apps["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Available", "True", "Local")


def test_unreachable_apiservices_say_why(http, extension):
    port, pem = extension
    name = f"{VERSION}.{GROUP}"
    assert http.post("/apis/apiregistration.k8s.io/v1/apiservices", json=apiservice(pem)).status_code == 201
    try:
        wait_available(http, name, "False", "ServiceNotFound")
        assert http.post("/api/v1/namespaces/default/services", json=SERVICE).status_code == 201
        wait_available(http, name, "False", "MissingEndpoints")
        endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "wardle", "namespace": "default"},
                     "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": free_port()}]}]}
        assert http.post("/api/v1/namespaces/default/endpoints", json=endpoints).status_code == 201
        wait_available(http, name, "False", "FailedDiscoveryCheck")
        # Proxied requests to an unreachable extension are a 503 Status.
        resp = http.get(f"/apis/{GROUP}/{VERSION}/namespaces/default/flunders")
        assert resp.status_code == 503 and resp.json()["kind"] == "Status"
    finally:
        http.delete(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")


def register(http, port: int, pem: bytes) -> None:
    """Service + Endpoints to 127.0.0.1:port, the APIService; until it is Available."""
    assert http.post("/api/v1/namespaces/default/services", json=SERVICE).status_code == 201
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "wardle", "namespace": "default"},
                 "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}
    assert http.post("/api/v1/namespaces/default/endpoints", json=endpoints).status_code == 201
    assert http.post("/apis/apiregistration.k8s.io/v1/apiservices", json=apiservice(pem)).status_code == 201
    condition = wait_available(http, f"{VERSION}.{GROUP}", "True", "Passed")
    assert condition["message"] == "all checks passed"


def test_an_extension_apiserver_is_proxied_with_the_caller(http, extension):
    port, pem = extension
    register(http, port, pem)
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert groups[GROUP]["preferredVersion"] == {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    assert http.get(f"/apis/{GROUP}").json()["versions"][0]["version"] == VERSION
    assert http.get(f"/apis/{GROUP}/{VERSION}").json()["resources"][0]["name"] == "flunders"
    listed = http.get(f"/apis/{GROUP}/{VERSION}/namespaces/default/flunders").json()
    annotations = listed["items"][0]["metadata"]["annotations"]
    assert annotations["remote-user"] == "system:anonymous"            # no authentication on this apiserver
    assert annotations["remote-groups"] == "system:unauthenticated"
    # The official client reaches it like any group.
    with k8s.ApiClient(k8s.Configuration(host=http.base_url.__str__().rstrip("/"))) as api_client:
        got = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(GROUP, VERSION, "default", "flunders")
    assert [i["metadata"]["name"] for i in got["items"]] == ["f1"]


def test_a_watch_through_the_proxy_streams(http, extension):
    port, pem = extension
    register(http, port, pem)
    seen = []
    with httpx.Client(base_url=str(http.base_url), timeout=httpx.Timeout(10, read=10)) as client:
        with client.stream("GET", f"/apis/{GROUP}/{VERSION}/namespaces/default/flunders", params={"watch": "1"}) as resp:
            for line in resp.iter_lines():
                seen.append(json.loads(line)["object"]["metadata"]["name"])
                if len(seen) == 2:
                    break                   # the stream is still open: events came as they were sent
    assert seen == ["w1", "w2"]


def test_real_kubectl_through_the_aggregated_api(kubectl, http, extension):  # noqa: F811 - the fixture
    port, pem = extension
    register(http, port, pem)
    local_apiservices(http)
    got = kubectl("get", "flunders")
    assert got.returncode == 0, got.stderr
    assert "f1" in got.stdout
    services = kubectl("get", "apiservices")
    assert services.returncode == 0, services.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in services.stdout.splitlines()[1:]}
    assert services.stdout.split()[:4] == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert rows["v1.apps"] == ["Local", "True"]
    assert rows[f"{VERSION}.{GROUP}"] == ["default/wardle", "True"]


def test_crd_groups_get_an_apiservice_while_served(http):
    from tests.integration.test_crds import widget_crd
    local_apiservices(http)
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=widget_crd()).status_code == 201
    url = "/apis/apiregistration.k8s.io/v1/apiservices/v1.example.com"
    made = wait_for(lambda: http.get(url).json() if http.get(url).status_code == 200 else None)
    assert made["spec"] == {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 100}
    assert made["metadata"]["labels"] == {"kube-aggregator.kubernetes.io/automanaged": "true"}
    http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    wait_for(lambda: http.get(url).status_code == 404)
