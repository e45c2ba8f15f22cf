"""etcd's own PKI, for members that listen beyond loopback (a control plane of several machines).

As kubeadm does, etcd gets a CA of its own (DIR/pki/etcd/ca.{crt,key}): etcd trusts every
client certificate its CA signed, so signing them with the cluster CA would let any node's or
user's certificate read and write the whole store. Each member has a serving certificate
(``<member>-server``: its addresses, ``localhost`` and the name ``etcd`` that clients of
several members verify, see pkube/apiserver/storage/etcd.py) and a peer certificate
(``<member>-peer``); the apiserver has ``apiserver-etcd-client`` and pkube's own tools
(snapshots, key rotation) ``etcd-admin-client``. A single-member cluster on loopback runs
without TLS, as before: nothing but local root reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pkube.cluster import pki

CA_COMMON_NAME = "etcd-ca"
SERVER_NAME = "etcd"          # the DNS name in every member's serving certificate
APISERVER_CLIENT = "apiserver-etcd-client"
ADMIN_CLIENT = "etcd-admin-client"


@dataclass(frozen=True)
class EtcdTLS:
    """The files one party needs: its certificate and key, and the etcd CA to verify the other."""

    ca: Path
    cert: Path
    key: Path


def etcd_pki_dir(pki_dir: Path) -> Path:
    return pki_dir / "etcd"


def member_certificates(member: str, addresses: tuple[str, ...]) -> list[pki.CertSpec]:
    """The serving and peer certificates of ``member`` listening on ``addresses``."""
    ips = tuple(dict.fromkeys(("127.0.0.1", *addresses)))
    return [pki.CertSpec(f"{member}-server", f"etcd-server-{member}", client=True, server=True,
                         dns_names=(SERVER_NAME, "localhost", member), ips=ips),
            pki.CertSpec(f"{member}-peer", f"etcd-peer-{member}", client=True, server=True,
                         dns_names=(member, "localhost"), ips=ips)]


def client_certificates() -> list[pki.CertSpec]:
    return [pki.CertSpec(APISERVER_CLIENT, "kube-apiserver-etcd-client"),
            pki.CertSpec(ADMIN_CLIENT, "etcd-admin-client")]


def ensure(pki_dir: Path, member: str, addresses: tuple[str, ...]) -> list[str]:
    """Make the etcd CA when missing, and whatever certificate of ``member`` and of its clients
    is missing or stale; the names issued. Raises PKIError."""
    specs = member_certificates(member, addresses) + client_certificates()
    return pki.ensure_certificates(etcd_pki_dir(pki_dir), specs, ca_common_name=CA_COMMON_NAME)


def tls_of(pki_dir: Path, name: str) -> EtcdTLS:
    """The files of certificate ``name`` (``<member>-server``, ``<member>-peer`` or a client)."""
    directory = etcd_pki_dir(pki_dir)
    return EtcdTLS(directory / "ca.crt", directory / f"{name}.crt", directory / f"{name}.key")
