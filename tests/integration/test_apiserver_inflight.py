"""Overload protection on a real apiserver: past --max-mutating-requests-inflight the next
write is answered 429 with Retry-After and Kubernetes' message, and is served again once the
slow one ends; a watch does not count, but a user's watches are capped."""

from __future__ import annotations

import json
import socket

import pytest

from pkube.apiserver.auth.user import MASTERS_GROUP, UserInfo
from pkube.apiserver.inflight import InflightLimiter
from pkube.apiserver.requestfilters import RequestFilters
from pkube.apiserver.requestinfo import request_info
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver


@pytest.fixture
def limited(etcd):
    limiter = InflightLimiter(max_read_only=1, max_mutating=1, max_watches_per_user=2)
    thread, running = start_apiserver(etcd, filters=RequestFilters(limiter=limiter))
    try:
        yield running
    finally:
        stop_apiserver(thread)


def slow_create(url: str) -> socket.socket:
    """A create whose client sends the headers and only half of the body: it stays in flight
    (the apiserver waits for the rest) until the socket is closed."""
    body = json.dumps({"metadata": {"name": "slow"}, "data": {"k": "v"}}).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body[:10])
    return sock


def create(http, name: str):
    return http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": name}})


def test_past_the_mutating_limit_a_write_gets_429_with_retry_after(limited):
    with limited.client() as http:
        held = slow_create(limited.url)
        try:
            refused = wait_for(lambda: (r := create(http, "second")).status_code == 429 and r)
            assert refused.headers["Retry-After"] == "1"
            # kube-apiserver's max-in-flight filter answers with http.Error: text, not a Status
            assert refused.text == "Too many requests, please try again later.\n"
            assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert http.get("/api/v1/namespaces/default/configmaps").status_code == 200   # reads: own limit
        finally:
            held.close()
        wait_for(lambda: create(http, "third").status_code == 201)


def test_watches_are_not_counted_but_capped_per_user(limited):
    with limited.client() as http:
        path = "/api/v1/namespaces/default/configmaps?watch=1"
        with http.stream("GET", path) as first, http.stream("GET", path) as second:
            assert first.status_code == second.status_code == 200
            assert create(http, "while-watching").status_code == 201       # not in the mutating count
            refused = http.get(path)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert "Too many watches" in refused.json()["message"]
        wait_for(lambda: http.get(path + "&timeoutSeconds=1").status_code == 200)   # the slots came back


def test_system_masters_are_never_refused_by_the_in_flight_limit_as_upstream():
    limiter = InflightLimiter(max_read_only=1, max_mutating=1)
    info = request_info("POST", "/api/v1/namespaces/default/pods", {})
    limiter.admit(info, UserInfo("alice"))
    with pytest.raises(Exception, match="Too many requests"):
        limiter.admit(info, UserInfo("bob"))
    limiter.admit(info, UserInfo("admin", groups=(MASTERS_GROUP,)))


def test_a_release_frees_the_slot_once():
    limiter = InflightLimiter(max_read_only=1, max_mutating=1)
    info = request_info("GET", "/api/v1/pods", {})
    release = limiter.admit(info, None)
    release()
    release()
    limiter.admit(info, None)
    with pytest.raises(Exception, match="Too many requests"):
        limiter.admit(info, None)
