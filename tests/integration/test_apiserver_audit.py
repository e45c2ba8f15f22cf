"""The audit log of a real apiserver: a create is recorded with its caller, verb, object and
code in audit.k8s.io/v1 Event format; Secret bodies never reach the log; a watch gets
ResponseStarted and, when it ends, ResponseComplete; the policy's levels and rotation hold."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from pkube.apiserver.audit import AuditLog, Auditor, parse_policy
from pkube.apiserver.auth.user import AUTHENTICATED_GROUP, UserInfo
from pkube.apiserver.requestfilters import RequestFilters
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver

SECRET_VALUE = "s3cr3t-value-never-logged"
DEFAULT_POLICY = (Path(__file__).resolve().parents[2] / "pkube" / "cluster" / "templates" / "audit-policy.yaml").read_text()


async def header_authenticator(request):
    """Test stand-in for client certificates: the caller named by X-Test-User."""
    name = request.headers.get("x-test-user", "alice")
    return UserInfo(name, groups=("developers", AUTHENTICATED_GROUP))


def audited_apiserver(etcd, tmp_path, policy: str = DEFAULT_POLICY, **log_options):
    auditor = Auditor(parse_policy(yaml.safe_load(policy)), AuditLog(tmp_path / "audit.log", **log_options))
    return start_apiserver(etcd, authenticator=header_authenticator, filters=RequestFilters(auditor=auditor))


@pytest.fixture
def audited(etcd, tmp_path):
    thread, running = audited_apiserver(etcd, tmp_path)
    try:
        yield running, tmp_path / "audit.log"
    finally:
        stop_apiserver(thread)


def events(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def find(path, **fields) -> list[dict]:
    """The events whose top-level fields (and objectRef's name) match ``fields``."""
    name = fields.pop("name", None)
    return [e for e in events(path) if all(e.get(k) == v for k, v in fields.items())
            and (name is None or e.get("objectRef", {}).get("name") == name)]


def test_a_create_is_recorded_with_its_user_and_the_request_body(audited):
    api, log = audited
    with api.client(headers={"X-Test-User": "alice", "User-Agent": "audit-test/1"}) as http:
        made = http.post("/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": "not-this"}, "data": {"k": "v"}})
        assert made.status_code == 201
        made = http.post("/api/v1/namespaces/default/pods", json={
            "metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        assert made.status_code == 201, made.text
    event = wait_for(lambda: find(log, verb="create", name="web"))[0]
    assert event["kind"] == "Event" and event["apiVersion"] == "audit.k8s.io/v1"
    assert event["stage"] == "ResponseComplete" and event["level"] == "Request"
    assert event["user"] == {"username": "alice", "groups": ["developers", AUTHENTICATED_GROUP]}
    assert event["objectRef"] == {"resource": "pods", "namespace": "default", "name": "web", "apiVersion": "v1"} \
        or event["objectRef"] == {"resource": "pods", "namespace": "default", "apiVersion": "v1"}
    assert event["responseStatus"]["code"] == 201
    assert event["requestURI"] == "/api/v1/namespaces/default/pods"
    assert event["sourceIPs"] == ["127.0.0.1"] and event["userAgent"] == "audit-test/1"
    assert event["requestObject"]["metadata"]["name"] == "web"
    assert event["requestReceivedTimestamp"] <= event["stageTimestamp"]
    assert made.headers["Audit-Id"] == event["auditID"]


def test_secret_data_never_reaches_the_log(audited):
    api, log = audited
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    with api.client() as http:
        assert http.post("/api/v1/namespaces/default/secrets", json={
            "metadata": {"name": "db"}, "data": {"password": encoded}}).status_code == 201
        assert http.put("/api/v1/namespaces/default/secrets/db", json={
            "metadata": {"name": "db"}, "stringData": {"password": SECRET_VALUE}}).status_code == 200
        assert http.get("/api/v1/namespaces/default/secrets/db").status_code == 200
        assert http.get("/api/v1/namespaces/default/secrets").status_code == 200
    wait_for(lambda: find(log, verb="list") and find(log, verb="update"))
    writes = [e for e in events(log) if e.get("objectRef", {}).get("resource") == "secrets"]
    assert {e["verb"] for e in writes} >= {"create", "update", "get", "list"}
    assert all(e["level"] == "Metadata" for e in writes)
    text = log.read_text()
    assert SECRET_VALUE not in text and encoded not in text


def test_a_refused_request_is_recorded_with_its_status(audited):
    api, log = audited
    with api.client() as http:
        assert http.get("/api/v1/namespaces/default/pods/missing").status_code == 404
    event = wait_for(lambda: find(log, verb="get", name="missing"))[0]
    assert event["responseStatus"]["code"] == 404 and event["responseStatus"]["reason"] == "NotFound"


def test_a_watch_is_recorded_when_it_starts_and_when_it_ends(audited):
    api, log = audited
    with api.client() as http:
        with http.stream("GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1") as watch:
            assert watch.status_code == 200
            started = wait_for(lambda: find(log, verb="watch", stage="ResponseStarted"))[0]
            for _ in watch.iter_bytes():
                pass
    completed = wait_for(lambda: find(log, verb="watch", stage="ResponseComplete"))[0]
    assert completed["auditID"] == started["auditID"]


def test_the_policy_decides_the_level(etcd, tmp_path):
    policy = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: [bob]
  - level: RequestResponse
    resources: [{group: "", resources: [configmaps]}]
    namespaces: [default]
  - level: Metadata
"""
    thread, api = audited_apiserver(etcd, tmp_path, policy)
    log = tmp_path / "audit.log"
    try:
        with api.client(headers={"X-Test-User": "bob"}) as http:
            assert http.post("/api/v1/namespaces/default/configmaps",
                             json={"metadata": {"name": "by-bob"}}).status_code == 201
        with api.client() as http:
            assert http.post("/api/v1/namespaces/default/configmaps",
                             json={"metadata": {"name": "by-alice"}, "data": {"k": "v"}}).status_code == 201
            assert http.get("/api/v1/namespaces/kube-system/configmaps").status_code == 200
        event = wait_for(lambda: find(log, verb="create"))[0]
        assert event["user"]["username"] == "alice" and event["level"] == "RequestResponse"
        assert event["responseObject"]["data"] == {"k": "v"} and event["requestObject"]["data"] == {"k": "v"}
        listed = wait_for(lambda: find(log, verb="list"))[0]
        assert listed["level"] == "Metadata" and "responseObject" not in listed
        assert not [e for e in events(log) if e["user"]["username"] == "bob"]
    finally:
        stop_apiserver(thread)


def test_the_log_rotates_past_its_size_keeping_the_newest_backups(tmp_path):
    import asyncio

    log = AuditLog(tmp_path / "audit.log", max_size_mb=1, max_backups=2)

    async def fill():
        await log.start()
        for round_ in range(4):
            newest = log.backups()[-1:]
            for i in range(1100):     # ~1.1 MB: each round's batch goes past the limit
                log.write(json.dumps({"n": i, "pad": "x" * 1000}).encode())
            while log.path.exists() or log.backups()[-1:] == newest:   # until rotated
                await asyncio.sleep(0.01)
        log.write(b'{"pad": "the newest"}')
        await log.stop()
    asyncio.run(fill())
    assert len(log.backups()) == 2
    assert log.path.read_text() == '{"pad": "the newest"}\n'
    for path in [*log.backups(), log.path]:
        assert all(json.loads(line)["pad"] for line in path.read_text().splitlines())


def test_a_malformed_policy_is_refused_with_the_reason():
    from pkube.apiserver.audit import AuditPolicyError
    with pytest.raises(AuditPolicyError, match="level must be one of"):
        parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Everything"}]})


def test_an_exec_websocket_is_audited_even_when_refused(audited):
    import socket
    api, log = audited
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/namespaces/default/pods/nowhere/exec?command=sh&stdout=1 HTTP/1.1\r\n"
                     b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Test-User: mallory\r\n\r\n")
        assert b" 404 " in sock.recv(4096).split(b"\r\n")[0] + b" "
    event = wait_for(lambda: find(log, name="nowhere"))[0]
    assert event["objectRef"]["subresource"] == "exec" and event["responseStatus"]["code"] == 404
    assert event["user"]["username"] == "mallory" and event["stage"] == "ResponseComplete"
