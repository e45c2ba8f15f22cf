"""A new member's --initial-cluster comes from etcd's answer to its MemberAdd (etcd 3.5's member
list would wait for a quorum the new member has to bring)."""

from __future__ import annotations

from pkube.cluster.etcdmembers import initial_cluster

MEMBER_ADD = {  # `etcdctl member add two --peer-urls=http://127.0.0.1:23802 -w json`, etcd 3.5.16
    "header": {"cluster_id": 324952591200643719, "member_id": 3319814642761637952, "raft_term": 2},
    "member": {"ID": 14507535505647601912, "peerURLs": ["http://127.0.0.1:23802"]},
    "members": [{"ID": 3319814642761637952, "name": "default", "peerURLs": ["http://127.0.0.1:23800"],
                 "clientURLs": ["http://127.0.0.1:23799"]},
                {"ID": 14507535505647601912, "peerURLs": ["http://127.0.0.1:23802"]}],
}


def test_the_new_member_is_named_in_its_initial_cluster():
    assert initial_cluster(MEMBER_ADD, "two") == "default=http://127.0.0.1:23800,two=http://127.0.0.1:23802"


def test_a_member_without_a_peer_url_is_left_out():
    answer = {"members": [*MEMBER_ADD["members"], {"ID": 1, "name": "odd"}]}
    assert initial_cluster(answer, "two") == "default=http://127.0.0.1:23800,two=http://127.0.0.1:23802"
