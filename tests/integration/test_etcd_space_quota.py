"""etcd's space quota reached (a real etcd started with a 2 MiB --quota-backend-bytes): the
apiserver answers writes as kube-apiserver does (500, etcd's own message), reads go on, and
once etcd is compacted, defragmented and its alarm disarmed (what `pkube etcd defrag` does)
writes work again. Deletes go on meanwhile (etcd accepts them)."""

from __future__ import annotations

import pytest

from pkube.cluster.etcd import EtcdProcess
from pkube.cluster.etcdbackup import etcdctl, reclaim
from tests.integration.conftest import start_apiserver, stop_apiserver

QUOTA = 2 * 1024 ** 2
MESSAGE = "etcdserver: mvcc: database space exceeded"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def small_etcd(tmp_path):
    proc = EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log", quota_backend_bytes=QUOTA).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def quota_http(small_etcd):
    thread, running = start_apiserver(small_etcd)
    try:
        with running.client() as http:
            yield http
    finally:
        stop_apiserver(thread)


def configmap(name: str, fill: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"fill": fill * 100_000}}


def fill_until_refused(http) -> dict:
    """Rewrite one 100 kB ConfigMap (etcd keeps every revision) until a write is refused."""
    assert http.post(CONFIGMAPS, json=configmap("big", "a")).status_code == 201
    for i in range(200):
        answer = http.put(f"{CONFIGMAPS}/big", json=configmap("big", "abcdefghij"[i % 10]))
        if answer.status_code != 200:
            return answer
    raise AssertionError("200 rewrites of 100 kB did not reach a 2 MiB quota")


def test_writes_over_the_quota_get_etcds_message_reads_go_on_and_defrag_recovers(small_etcd, quota_http):
    refused = fill_until_refused(quota_http)
    assert refused.status_code == 500, refused.text
    status = refused.json()   # kube-apiserver's Status for an etcd error: no reason (omitted when empty)
    assert (status["kind"], status["code"], status["message"], status.get("reason", "")) == ("Status", 500, MESSAGE, "")
    assert "NOSPACE" in etcdctl("--endpoints", small_etcd.endpoint, "alarm", "list")
    small = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "small"}}
    assert quota_http.post(CONFIGMAPS, json=small).json()["message"] == MESSAGE
    assert quota_http.patch(f"{CONFIGMAPS}/big", json={"metadata": {"labels": {"a": "b"}}},
                            headers={"Content-Type": "application/merge-patch+json"}).json()["message"] == MESSAGE
    assert quota_http.get(f"{CONFIGMAPS}/big").status_code == 200
    assert [cm["metadata"]["name"] for cm in quota_http.get(CONFIGMAPS).json()["items"]] == ["big"]

    assert quota_http.delete(f"{CONFIGMAPS}/big").status_code == 200   # deletes make room
    before, after, _ = reclaim(small_etcd.endpoint)
    assert after < before
    assert etcdctl("--endpoints", small_etcd.endpoint, "alarm", "list").strip() == ""
    assert quota_http.post(CONFIGMAPS, json=small).status_code == 201
