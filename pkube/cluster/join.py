"""`pkube join SERVER --token TOKEN`: add this machine to a cluster as a node.

The path a machine takes, kubeadm style, and what each step trusts:

1. discovery: a TLS handshake with SERVER that verifies nothing, only to read the certificate
   chain the apiserver sends (its serving certificate, then the cluster CA: cluster.pki writes
   serving certificates as chains); the CA whose public key hashes to the token's
   ``K10<hash>`` is the cluster's. Nothing is sent before that: a server that does not show
   that CA is refused, and the token never reaches it.
2. TLS bootstrap: with the CA pinned, the bootstrap token (``<id>.<secret>``) asks for the
   node's own client certificate (``system:node:NAME``) through a CertificateSigningRequest
   that the controller-manager approves for bootstrap tokens (client.csr). The apiserver
   refuses a wrong or expired token with 401.
3. as the node itself: a node of that name already registered is refused (unless this
   machine re-joins with its own credentials, below); then the kubelet's serving certificate
   (its name and --node-ip) through a kubelet-serving CSR, approved for the node itself.
4. files, written only once every check passed: DIR/pki/ca.crt, DIR/pki/kubelet.{crt,key}
   (serving), DIR/kubelet.kubeconfig and DIR/proxy.kubeconfig (both the node's identity: the
   proxy of a joined node reads Services as its node, cluster.addons grants nodes that).

A machine that joined before (DIR holds a valid certificate of that node for the CA the token
pins) skips 2-4 and starts again with its own credentials: that is how a stopped node
restarts. Then the kubelet and the proxy run, supervised as `pkube up` supervises them
(cluster.up), until SIGTERM; `pkube down --data-dir DIR` stops them and removes their pods.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from cryptography import x509
from cryptography.x509.oid import NameOID

from pkube.cluster import pki
from pkube.cluster.kubeconfig import admin_kubeconfig, write_private
from pkube.cluster.up import ClusterConfig, ClusterError

DISCOVERY_TIMEOUT = 10.0
CERTIFICATE_TIMEOUT = 60.0
RENEW_MARGIN = datetime.timedelta(minutes=5)


class JoinError(ClusterError):
    """A refused join: one line for the user; nothing was written."""


@dataclass(frozen=True)
class Credentials:
    """What a joined node holds: the cluster CA, its client and its serving certificates (PEM)."""

    ca: bytes
    client_cert: bytes
    client_key: bytes
    serving_cert: bytes
    serving_key: bytes


def server_address(server: str) -> tuple[str, int]:
    """(host, port) of an https:// apiserver URL; JoinError otherwise."""
    url = urllib.parse.urlsplit(server)
    if url.scheme != "https" or not url.hostname:
        raise JoinError(f"invalid server {server!r}: want https://HOST[:PORT]")
    return url.hostname, url.port or 6443


def route_source(host: str, port: int) -> str:
    """The local address the route to host:port leaves from (no packet is sent): the node's
    default --node-ip. JoinError when there is no route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
            return probe.getsockname()[0]
        except OSError as err:
            raise JoinError(f"cannot reach {host}:{port}: {err.strerror or err}") from None


def served_chain(host: str, port: int, timeout: float = DISCOVERY_TIMEOUT) -> list[bytes]:
    """The PEM certificates the server at host:port sends in its TLS handshake, unverified.
    JoinError when it cannot be reached."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                chain = tls._sslobj.get_unverified_chain() or []   # public as of Python 3.13
    except (OSError, ssl.SSLError) as err:
        raise JoinError(f"cannot reach the apiserver at https://{host}:{port}: "
                        f"{getattr(err, 'strerror', None) or err}") from None
    return [cert.public_bytes(ssl._ssl.ENCODING_PEM).encode() for cert in chain]


def discover_ca(host: str, port: int, ca_hash: str) -> bytes:
    """The cluster CA (PEM) the server shows whose public key hashes to `ca_hash`
    (``sha256:<hex>``). JoinError when the server shows no such CA."""
    chain = served_chain(host, port)
    for pem in chain:
        if _is_ca(pem) and pki.ca_hash(pem) == ca_hash:
            return pem
    shown = ", ".join(pki.ca_hash(pem) for pem in chain if _is_ca(pem)) or "none"
    raise JoinError(f"the server's CA does not match the token's hash {ca_hash} (its CA: {shown}): "
                    f"refusing to trust https://{host}:{port}")


def _is_ca(pem: bytes) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (ValueError, x509.ExtensionNotFound):
        return False


def existing_credentials(config: ClusterConfig, ca_hash: str) -> Optional[Credentials]:
    """This node's credentials from an earlier join when they are whole, for the CA `ca_hash`
    pins, of this node, and valid for a while yet; else None."""
    from pkube.client.kubeconfig import KubeconfigError, load_kubeconfig
    try:
        client = load_kubeconfig(config.kubeconfig_of("kubelet"))
        ca = client.ca.encode()
        serving = (config.pki_dir / "kubelet.crt").read_bytes(), (config.pki_dir / "kubelet.key").read_bytes()
        cert = x509.load_pem_x509_certificate(client.cert.encode())
    except (OSError, KubeconfigError, ValueError, AttributeError):
        return None
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    fresh = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > RENEW_MARGIN
    if not fresh or not common or common[0].value != f"system:node:{config.node_name}" or pki.ca_hash(ca) != ca_hash:
        return None
    return Credentials(ca, client.cert.encode(), client.key.encode(), *serving)


def bootstrap(server: str, ca: bytes, token: str, node: str, node_ip: str) -> Credentials:
    """Steps 2 and 3 of the module docstring; JoinError for every refusal."""
    from pkube.client.csr import CertificateRefused, bootstrap_node_certificate
    from pkube.client.errors import ApiError, Unavailable
    try:
        cert, key = bootstrap_node_certificate(server, ca.decode(), token, node, CERTIFICATE_TIMEOUT)
        serving_cert, serving_key = asyncio.run(_as_node(server, ca, cert, key, node, node_ip))
    except ApiError as err:
        if err.code == 401:
            raise JoinError(f"{server} refused the token (401 Unauthorized): it is wrong or has expired "
                            "(make a new one on the control plane: pkube token create)") from None
        raise JoinError(f"{server} refused the join: {err.message or err}") from None
    except Unavailable as err:
        raise JoinError(f"cannot reach the apiserver at {server}: {err.message or err}") from None
    except CertificateRefused as err:
        raise JoinError(str(err)) from None
    except TimeoutError:
        raise JoinError(f"no certificate within {CERTIFICATE_TIMEOUT:.0f}s: is the controller-manager running "
                        f"on {server}? (kubectl get csr)") from None
    return Credentials(ca, cert, key, serving_cert + ca, serving_key)


async def _as_node(server: str, ca: bytes, cert: bytes, key: bytes, node: str, node_ip: str) -> tuple[bytes, bytes]:
    """As the node: refuse a Node of that name already registered, then get the kubelet's
    serving certificate for its name, the host name and `node_ip`."""
    from pkube.client.aio import AsyncApiClient
    from pkube.client.csr import request_serving_certificate
    from pkube.client.errors import NotFound
    from pkube.client.kubeconfig import ClientConfig
    from pkube.client.resources import NODES
    config = ClientConfig(server, ca=ca.decode(), cert=cert.decode(), key=key.decode())
    async with AsyncApiClient(config, timeout=15) as client:
        try:
            await client.get(NODES, node)
        except NotFound:
            pass
        else:
            raise JoinError(f"node {node} already exists in the cluster: delete it first (kubectl delete node "
                            f"{node}) or join under another --node-name")
        names = list(dict.fromkeys((node, socket.gethostname().lower())))
        return await request_serving_certificate(client, node, names, [node_ip], CERTIFICATE_TIMEOUT)


def write_credentials(config: ClusterConfig, server: str, creds: Credentials) -> None:
    """DIR/pki/ca.crt, DIR/pki/kubelet.{crt,key} and the node's two kubeconfigs."""
    config.pki_dir.mkdir(parents=True, exist_ok=True)
    pki.write_file(config.pki_dir / "ca.crt", creds.ca, 0o644)
    pki.write_file(config.pki_dir / "kubelet.key", creds.serving_key, 0o600)
    pki.write_file(config.pki_dir / "kubelet.crt", creds.serving_cert, 0o644)
    kubeconfig = admin_kubeconfig(server, ca_data=base64.b64encode(creds.ca).decode(),
                                  client_cert=creds.client_cert, client_key=creds.client_key)
    for component in ("kubelet", "proxy"):
        write_private(Path(config.kubeconfig_of(component)), kubeconfig)


def ensure_credentials(config: ClusterConfig, server: str, token: str, log: Callable[[str], None]) -> None:
    """Verify the server against the token's CA hash, then reuse this node's credentials or
    bootstrap new ones and write them. Raises JoinError (nothing written) or TokenError."""
    from pkube.cluster.tokens import parse_join_token
    ca_hash, secret = parse_join_token(token)
    host, port = server_address(server)
    ca = discover_ca(host, port, ca_hash)
    if existing_credentials(config, ca_hash) is not None:
        log(f"node {config.node_name}: using its credentials in {config.data_dir}")
        return
    creds = bootstrap(server, ca, secret, config.node_name, config.node_ip)
    write_credentials(config, server, creds)
    log(f"node {config.node_name} joined {server}: its certificates are in {config.pki_dir}")
