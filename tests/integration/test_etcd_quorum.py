"""An apiserver process on a three-member etcd cluster (--etcd-servers a,b,c): one member
killed, reads and writes go on and the member catches up when it is back; two killed, a
write gets a 503 Status naming the storage instead of hanging, and writes resume when a
member returns."""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest

from pkube.cluster.etcd import free_port, start_members
from tests.helpers.waiting import wait_for
from tests.integration.processes import start_component, stop_all

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def members(tmp_path):
    started = start_members(tmp_path / "etcd", 3)
    try:
        yield started
    finally:
        for member in started:
            member.stop()


@pytest.fixture
def http(members, tmp_path):
    port = free_port()
    apiserver = start_component("pkube.apiserver", [
        "--etcd-servers", ",".join(m.endpoint for m in members), "--port", str(port)], tmp_path / "apiserver.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            wait_for(lambda: _answers(client, "/readyz"), timeout=60)
            yield client
    finally:
        stop_all([apiserver])


def _answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _create(http: httpx.Client, name: str) -> httpx.Response:
    return http.post(CONFIGMAPS, json={"metadata": {"name": name}, "data": {"k": name}})


def _kill(member) -> None:
    member.proc.send_signal(signal.SIGKILL)
    member.proc.wait(10)


def _keys_in(member) -> set[str]:
    """The configmap names one member holds, read from that member alone (serializable)."""
    out = subprocess.run(["etcdctl", "--endpoints", member.endpoint, "get", "--prefix", "--keys-only",
                          "--consistency=s", "/registry/configmaps/default/"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return {line.rsplit("/", 1)[-1] for line in out.split() if line}


def test_one_member_down_writes_go_on_and_it_catches_up(members, http):
    assert _create(http, "before").status_code == 201
    _kill(members[0])   # the member the apiserver's connection picked first
    wait_for(lambda: _create(http, "during").status_code in (201, 409), timeout=30)
    assert http.get(f"{CONFIGMAPS}/before").status_code == 200
    members[0].launch().wait_healthy()
    wait_for(lambda: {"before", "during"} <= _keys_in(members[0]), timeout=30)


def test_without_quorum_a_write_fails_with_a_503_and_resumes_when_a_member_returns(members, http):
    assert _create(http, "before").status_code == 201
    _kill(members[1])
    _kill(members[2])
    refused = _create(http, "lost")     # the client's 60 s timeout would fail a hang
    assert refused.status_code == 503, refused.text
    status = refused.json()
    assert (status["kind"], status["reason"]) == ("Status", "ServiceUnavailable")
    assert status["message"].startswith("the storage is unavailable")
    members[1].launch().wait_healthy()
    wait_for(lambda: _create(http, "after").status_code in (201, 409), timeout=30)
    assert {"before", "after"} <= _keys_in(members[1])
