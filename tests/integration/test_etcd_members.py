"""etcd membership with the real etcdctl (pkube/cluster/etcdmembers.py): a fourth member added to a
running cluster of three catches up with what was written before it came; a member removed
leaves a cluster that still writes; the same name twice and the last member are refused."""

from __future__ import annotations

import subprocess

import pytest

from pkube.cluster import etcdmembers
from pkube.cluster.etcd import EtcdProcess, free_port, start_members
from pkube.cluster.up import ClusterError
from tests.helpers.waiting import wait_for


@pytest.fixture
def cluster(tmp_path):
    started = start_members(tmp_path / "etcd", 3)
    extra: list[EtcdProcess] = []
    try:
        yield started, extra
    finally:
        for member in [*started, *extra]:
            member.stop()


def _etcdctl(endpoint: str, *args: str) -> str:
    return subprocess.run(["etcdctl", "--endpoints", endpoint, *args], capture_output=True, text=True,
                          timeout=20, check=True).stdout


def _put(endpoint: str, key: str, value: str) -> bool:
    """True once etcd has acknowledged the write."""
    return subprocess.run(["etcdctl", "--endpoints", endpoint, "put", key, value], capture_output=True,
                          timeout=20).returncode == 0


def test_a_member_added_catches_up_and_a_removed_one_leaves_a_working_cluster(cluster, tmp_path):
    members, extra = cluster
    endpoints = [m.endpoint for m in members]
    _etcdctl(endpoints[0], "put", "/before", "1")
    newcomer = EtcdProcess(tmp_path / "etcd" / "etcd3", name="etcd3", log_path=tmp_path / "etcd3.log",
                           client_port=free_port(), peer_port=free_port(), existing=True)
    newcomer.initial_cluster = etcdmembers.add(endpoints, "etcd3", newcomer.peer_url)
    extra.append(newcomer.launch())
    newcomer.wait_healthy(30)
    assert sorted(m.name for m in etcdmembers.members(endpoints)) == ["etcd0", "etcd1", "etcd2", "etcd3"]
    wait_for(lambda: _etcdctl(newcomer.endpoint, "get", "/before", "--consistency=s", "--print-value-only") == "1\n",
             timeout=20)
    removed = etcdmembers.remove([newcomer.endpoint], "etcd0")
    assert removed.name == "etcd0"
    members[0].stop()
    # 3 of 3 left: a quorum. Removing the leader costs an election first, so the write is
    # retried until one is elected ("etcdserver: leader changed" meanwhile).
    wait_for(lambda: _put(newcomer.endpoint, "/after", "2"), timeout=20)
    assert _etcdctl(newcomer.endpoint, "get", "/after", "--print-value-only") == "2\n"
    assert sorted(m.name for m in etcdmembers.members([newcomer.endpoint])) == ["etcd1", "etcd2", "etcd3"]


def test_a_taken_name_and_an_unknown_member_are_refused_in_one_line(cluster):
    members, _ = cluster
    endpoints = [m.endpoint for m in members]
    with pytest.raises(ClusterError, match="already has a member named etcd1"):
        etcdmembers.add(endpoints, "etcd1", "http://127.0.0.1:1")
    with pytest.raises(ClusterError, match="no member named nope"):
        etcdmembers.remove(endpoints, "nope")
    assert len(etcdmembers.members(endpoints)) == 3


def test_a_joined_members_leave_refuses_etcds_last_member_in_one_line(tmp_path):
    """What `pkube down --data-dir DIR` of a joined control-plane member runs before it stops
    anything (controlplanejoin.leave): with the member alone in etcd, a refusal."""
    from pkube.cluster import controlplanejoin, etcdpki, hacluster
    pki = tmp_path / "pki"
    etcdpki.ensure(pki, "solo", ("127.0.0.1",))
    member = EtcdProcess(tmp_path / "etcd-member", name="solo", log_path=tmp_path / "etcd.log", pki_dir=pki).start(30)
    try:
        hacluster.save_topology(tmp_path, {"etcdServers": [member.endpoint], "apiServers": [], "loadBalancerPort": 6444})
        (tmp_path / controlplanejoin.MEMBER_NAME_FILE).write_text("solo")
        with pytest.raises(ClusterError) as refused:
            controlplanejoin.leave(tmp_path, print)
        assert "solo is etcd's last member" in str(refused.value) and "\n" not in str(refused.value)
        assert [m.name for m in etcdmembers.members([member.endpoint], etcdpki.tls_of(pki, etcdpki.ADMIN_CLIENT))] \
            == ["solo"]
    finally:
        member.stop()
