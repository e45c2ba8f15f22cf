"""etcd over TLS with its own CA (pkube/cluster/etcdpki.py): a three-member cluster whose members
and peers speak HTTPS and demand a certificate of the etcd CA; the apiserver reaches it with
--etcd-cafile/--etcd-certfile/--etcd-keyfile and fails over between members; a client without
a certificate, or with one of another CA, gets nothing."""

from __future__ import annotations

import signal
import ssl
import urllib.error
import urllib.request

import httpx
import pytest

from pkube.cluster import etcdpki
from pkube.cluster.etcd import free_port, start_members
from tests.helpers.waiting import wait_for
from tests.integration.processes import start_component, stop_all

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def members(tmp_path):
    started = start_members(tmp_path / "etcd", 3, pki_dir=tmp_path / "pki")
    try:
        yield started, tmp_path / "pki"
    finally:
        for member in started:
            member.stop()


def _status(url: str, context: ssl.SSLContext | None) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        return type(getattr(exc, "reason", exc)).__name__


def test_only_a_certificate_of_the_etcd_ca_is_served(members, tmp_path):
    (first, *_), pki_dir = members
    assert first.endpoint.startswith("https://")
    assert _status(first.endpoint + "/health", first.client_context()) == 200
    bare = ssl.create_default_context(cafile=str(etcdpki.tls_of(pki_dir, etcdpki.ADMIN_CLIENT).ca))
    assert _status(first.endpoint + "/health", bare) != 200                     # no client certificate
    etcdpki.ensure(tmp_path / "other", "etcd0", ("127.0.0.1",))
    foreign = etcdpki.tls_of(tmp_path / "other", etcdpki.ADMIN_CLIENT)
    stranger = ssl.create_default_context(cafile=str(etcdpki.tls_of(pki_dir, etcdpki.ADMIN_CLIENT).ca))
    stranger.load_cert_chain(foreign.cert, foreign.key)
    assert _status(first.endpoint + "/health", stranger) != 200                 # another CA's certificate
    assert _status(first.endpoint.replace("https", "http") + "/health", None) != 200


def test_the_apiserver_writes_over_tls_and_fails_over_between_members(members, tmp_path):
    started, pki_dir = members
    client = etcdpki.tls_of(pki_dir, etcdpki.APISERVER_CLIENT)
    port = free_port()
    apiserver = start_component("pkube.apiserver", [
        "--etcd-servers", ",".join(m.endpoint for m in started), "--etcd-cafile", str(client.ca),
        "--etcd-certfile", str(client.cert), "--etcd-keyfile", str(client.key), "--port", str(port)],
        tmp_path / "apiserver.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            wait_for(lambda: _ready(http), timeout=60)
            assert http.post(CONFIGMAPS, json={"metadata": {"name": "before"}}).status_code == 201
            started[0].proc.send_signal(signal.SIGKILL)
            started[0].proc.wait(10)
            wait_for(lambda: http.post(CONFIGMAPS, json={"metadata": {"name": "after"}}).status_code in (201, 409),
                     timeout=30)
            names = [c["metadata"]["name"] for c in http.get(CONFIGMAPS).json()["items"]]
            assert {"before", "after"} <= set(names)
    finally:
        stop_all([apiserver])


def test_half_the_tls_flags_is_one_line_and_an_exit(tmp_path):
    proc = start_component("pkube.apiserver", ["--etcd-servers", "https://127.0.0.1:1", "--etcd-cafile", "/nope"],
                           tmp_path / "apiserver.log")
    assert proc.wait(30) != 0
    assert (tmp_path / "apiserver.log").read_text().strip().splitlines()[-1] == (
        "apiserver: --etcd-cafile, --etcd-certfile and --etcd-keyfile go together")


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
