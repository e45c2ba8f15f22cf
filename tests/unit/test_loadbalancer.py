"""The local load balancer's pure parts: server addresses, choosing, membership."""

import pytest

from pkube.cluster.loadbalancer import ServerList, endpoint_servers, parse_server

A, B, C = ("10.0.0.1", 6443), ("10.0.0.2", 6443), ("10.0.0.3", 6443)


@pytest.mark.parametrize("text, want", [("https://10.0.0.1:6443", A), ("10.0.0.1:6443", A),
                                        ("https://[fd00::1]:6443/", ("fd00::1", 6443))])
def test_server_addresses_parse(text, want):
    assert parse_server(text) == want


@pytest.mark.parametrize("text", ["https://10.0.0.1", "10.0.0.1:https", ":6443"])
def test_a_server_without_a_port_is_refused(text):
    with pytest.raises(ValueError, match="not a server address"):
        parse_server(text)


def test_the_current_server_is_kept_while_healthy_and_dead_ones_come_last():
    servers = ServerList([A, B, C])
    assert servers.candidates() == [A, B, C]
    servers.down.add(A)
    assert servers.candidates() == [B, C, A]
    servers.use(B)
    servers.down.add(C)
    assert servers.candidates() == [B, C, A]
    servers.down.discard(A)
    assert servers.candidates() == [B, A, C]


def test_new_membership_keeps_the_current_server_and_forgets_removed_ones():
    servers = ServerList([A, B])
    servers.use(B)
    servers.down.add(A)
    servers.replace([C, B])
    assert servers.candidates() == [B, C]
    servers.replace([C])
    assert (servers.candidates(), servers.down) == ([C], set())


def test_the_kubernetes_endpoints_give_every_address_on_the_https_port():
    endpoints = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}
    assert endpoint_servers(endpoints) == [A, B]
    assert endpoint_servers({}) == []


def test_the_preferred_server_is_current_again_once_it_passed_three_checks_in_a_row():
    servers = ServerList([A, B, C])
    servers.failed(A)
    servers.use(B)                                   # the failover
    assert servers.fail_back() is None
    servers.answered(A)
    servers.answered(A)
    servers.failed(A)                                # flapping: the run starts again
    servers.answered(A)
    servers.answered(A)
    assert servers.fail_back() is None and servers.candidates()[0] == B
    servers.answered(A)
    assert servers.fail_back() == B                  # the server left: its connections get closed
    assert servers.candidates() == [A, B, C]
    assert servers.fail_back() is None


def test_the_preferred_server_survives_a_new_membership_that_reorders_the_servers():
    servers = ServerList([A])
    servers.replace([C, B, A])
    servers.failed(A)
    servers.use(C)
    for _ in range(3):
        servers.answered(A)
    assert servers.fail_back() == C and servers.candidates()[0] == A
