"""`pkube join`'s discovery (the CA read from a real TLS handshake on loopback, kept only when
it matches the token's hash), its reuse of earlier credentials, and the layout of
`pkube up --nodes`: no apiserver (the whole path runs in tests/e2e/test_multinode.py)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from pkube.cluster import join, netnodes, pki
from pkube.cluster.up import ClusterConfig


@pytest.fixture
def tls_server(tmp_path):
    """A loopback TLS server presenting the certificate of a fresh pki (a chain ending with
    its CA); yields (port, pki dir)."""
    pki_dir = tmp_path / "pki"
    pki.ensure_certificates(pki_dir, [pki.CertSpec("apiserver", "kube-apiserver", client=False, server=True,
                                                   ips=("127.0.0.1",))])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki_dir / "apiserver.crt", pki_dir / "apiserver.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass
    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], pki_dir
    listener.close()


def test_the_ca_the_server_shows_is_kept_when_it_matches_the_token(tls_server):
    port, pki_dir = tls_server
    ca = (pki_dir / "ca.crt").read_bytes()
    assert join.discover_ca("127.0.0.1", port, pki.ca_hash(ca)) == ca


def test_a_server_with_another_ca_is_refused(tls_server):
    port, _ = tls_server
    with pytest.raises(join.JoinError, match="does not match the token's hash sha256:00"):
        join.discover_ca("127.0.0.1", port, "sha256:" + "0" * 64)


def test_an_unreachable_server_is_said_in_one_line():
    from pkube.cluster.etcd import free_port
    with pytest.raises(join.JoinError, match=r"cannot reach the apiserver at https://127.0.0.1:\d+: .*refused"):
        join.discover_ca("127.0.0.1", free_port(), "sha256:" + "0" * 64)


@pytest.mark.parametrize("server, address", [("https://10.0.0.10:6443", ("10.0.0.10", 6443)),
                                             ("https://cp", ("cp", 6443))])
def test_server_addresses(server, address):
    assert join.server_address(server) == address


@pytest.mark.parametrize("server", ["http://10.0.0.10:6443", "10.0.0.10:6443", "https://"])
def test_a_server_that_is_not_https_is_refused(server):
    with pytest.raises(join.JoinError, match="want https://HOST"):
        join.server_address(server)


def node_credentials(tmp_path: Path, node: str) -> tuple[ClusterConfig, bytes]:
    """Credentials as a join writes them, issued by a fresh CA for `node`; (config, CA PEM)."""
    ca_dir = tmp_path / "ca"
    pki.ensure_certificates(ca_dir, [pki.CertSpec("client", f"system:node:{node}", ("system:nodes",)),
                                     pki.CertSpec("serving", f"system:node:{node}", client=False, server=True,
                                                  ips=("10.0.0.11",))])
    read = lambda name: (ca_dir / name).read_bytes()   # noqa: E731
    config = ClusterConfig(data_dir=tmp_path / "node", node_name=node)
    creds = join.Credentials(read("ca.crt"), read("client.crt"), read("client.key"), read("serving.crt"),
                             read("serving.key"))
    join.write_credentials(config, "https://10.0.0.10:6443", creds)
    return config, read("ca.crt")


def test_a_node_that_joined_before_finds_its_credentials(tmp_path):
    config, ca = node_credentials(tmp_path, "w1")
    found = join.existing_credentials(config, pki.ca_hash(ca))
    assert found is not None and found.ca == ca
    assert join.existing_credentials(config, "sha256:" + "0" * 64) is None      # another cluster's token
    renamed = ClusterConfig(data_dir=config.data_dir, node_name="w2")
    assert join.existing_credentials(renamed, pki.ca_hash(ca)) is None          # another node's name
    assert join.existing_credentials(ClusterConfig(data_dir=tmp_path / "empty", node_name="w1"),
                                     pki.ca_hash(ca)) is None


def test_namespaced_nodes_have_their_own_names_addresses_dirs_and_cgroups(tmp_path):
    config = ClusterConfig(data_dir=tmp_path, node_name="host", nodes=3)
    nodes = netnodes.plan(config)
    assert [(n.name, n.address, n.netns, n.host_ifname, n.cgroup_root) for n in nodes] == [
        ("host-1", "10.200.0.2", "pkube-node1", "pkn1", "kubepods-node1"),
        ("host-2", "10.200.0.3", "pkube-node2", "pkn2", "kubepods-node2")]
    assert nodes[0].data_dir == tmp_path / "nodes" / "host-1"
    assert netnodes.plan(ClusterConfig(data_dir=tmp_path, nodes=1)) == []
    assert 'ip saddr 10.200.0.0/24 oifname != "pkube-nodes" masquerade' in netnodes.nft_ruleset()
