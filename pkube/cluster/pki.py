"""The cluster's certificates, kubeadm style: one CA made at the first `pkube up`, and the
certificates it signs for each component's own identity; and, as kubeadm, a separate
front-proxy CA whose only certificate, ``front-proxy-client``, is what the apiserver presents
to extension apiservers (an extension trusts that CA for the X-Remote-* headers alone, so no
cluster client certificate can pass for the proxy).

Files live in DIR/pki (the CAs' keys and every key 0600): ``ca.crt``/``ca.key``,
``front-proxy-ca.crt``/``front-proxy-ca.key`` and ``NAME.crt``/``NAME.key`` for each name of
`cluster_certificates` and `front_proxy_certificates`. A certificate is issued
again (with the same CA, a new key) when it is missing, no longer matches what the cluster
wants (its names, its subject) or expires within RENEW_WITHIN; `renew` re-issues named ones
from the certificate on disk as a template. Nothing here reads or writes a kubeconfig
(cluster.kubeconfig does).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
CA_COMMON_NAME = "kubernetes"
CA_VALIDITY = datetime.timedelta(days=3650)
CERT_VALIDITY = datetime.timedelta(days=365)
RENEW_WITHIN = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(minutes=5)
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"      # the apiserver's --service-cluster-ip-range default
SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
MASTERS = "system:masters"
NODES = "system:nodes"

# The names of the certificates (files DIR/pki/NAME.crt) and whose identity each one carries.
APISERVER = "apiserver"
APISERVER_KUBELET_CLIENT = "apiserver-kubelet-client"
ADMIN = "admin"
SCHEDULER = "scheduler"
CONTROLLER_MANAGER = "controller-manager"
KUBELET_CLIENT = "kubelet-client"
KUBELET_SERVING = "kubelet"
PROXY = "proxy"
FRONT_PROXY_CA = "front-proxy-ca"            # kubeadm's file names and common names
FRONT_PROXY_CLIENT = "front-proxy-client"
CA_NAMES = (CA_NAME, FRONT_PROXY_CA)


class PKIError(RuntimeError):
    """The CA or a certificate cannot be read or made (the message names the file)."""


@dataclass(frozen=True)
class CertSpec:
    """What one certificate says: its subject (CN = user, O = groups, as the apiserver reads
    client certificates), whether it serves and/or authenticates a client, and for serving
    certificates the DNS names and IP addresses it covers."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    client: bool = True
    server: bool = False
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Issued:
    """A certificate on disk: its name, expiry and the name of the CA of its directory that
    signed it ("" when none did)."""

    name: str
    not_after: datetime.datetime
    authority: str


def kubernetes_service_ip(service_cidr: str = DEFAULT_SERVICE_CIDR) -> str:
    """The first address of the service range, which the `kubernetes` Service gets."""
    return str(next(ipaddress.ip_network(service_cidr).hosts()))


def default_route_address() -> Optional[str]:
    """The source address of the default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))    # TEST-NET-1: only selects a route
            return probe.getsockname()[0]
        except OSError:
            return None


def cluster_certificates(node_name: str, listen_addresses: tuple[str, ...] = ("127.0.0.1",),
                         service_cidr: str = DEFAULT_SERVICE_CIDR, node_ips: tuple[str, ...] = ()) -> list[CertSpec]:
    """Every certificate of a single-node cluster, with Kubernetes' identities. The
    apiserver's serving certificate covers `listen_addresses`, the host's name, default
    route address and `node_ips`, localhost and the `kubernetes` Service's IP and names; the
    kubelet's covers the node's name and addresses (the apiserver dials its InternalIP)."""
    host = socket.gethostname().lower()
    route = default_route_address()
    local_ips = _unique(("127.0.0.1", *([route] if route else []), *node_ips))
    api_ips = _unique((*listen_addresses, *local_ips, kubernetes_service_ip(service_cidr)))
    return [
        CertSpec(APISERVER, "kube-apiserver", client=False, server=True,
                 dns_names=_unique((host, "localhost", *SERVICE_NAMES)), ips=api_ips),
        CertSpec(APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", (MASTERS,)),
        CertSpec(ADMIN, "kubernetes-admin", (MASTERS,)),
        CertSpec(SCHEDULER, "system:kube-scheduler"),
        CertSpec(CONTROLLER_MANAGER, "system:kube-controller-manager"),
        CertSpec(KUBELET_CLIENT, f"system:node:{node_name}", (NODES,)),
        CertSpec(KUBELET_SERVING, f"system:node:{node_name}", (NODES,), client=False, server=True,
                 dns_names=_unique((node_name, host, "localhost")), ips=local_ips),
        CertSpec(PROXY, "system:kube-proxy"),
    ]


def front_proxy_certificates() -> list[CertSpec]:
    """What the front-proxy CA signs: the apiserver's client certificate towards extension
    apiservers (--proxy-client-cert-file), CN ``front-proxy-client``, no groups."""
    return [CertSpec(FRONT_PROXY_CLIENT, FRONT_PROXY_CLIENT)]


def authority_of(name: str) -> str:
    """The CA (file stem) that issues certificate `name`."""
    return FRONT_PROXY_CA if name == FRONT_PROXY_CLIENT else CA_NAME


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


class CertificateAuthority:
    """One CA of a pki directory (files NAME.crt/NAME.key; the cluster CA is ``ca``): loads
    it, or makes it the first time."""

    def __init__(self, pki_dir: Path, cert: x509.Certificate, key, name: str = CA_NAME):
        self.pki_dir, self.cert, self.key, self.name = pki_dir, cert, key, name

    @classmethod
    def load_or_create(cls, pki_dir: Path, common_name: str = CA_COMMON_NAME,
                       name: str = CA_NAME) -> "CertificateAuthority":
        """The CA `name` in `pki_dir`, made (key 0600, subject CN `common_name`) when there is
        none. Raises PKIError."""
        cert_path, key_path = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
        if not cert_path.exists():
            pki_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(pki_dir, 0o755)
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _ca_certificate(key, common_name)
            _write(key_path, _key_pem(key), 0o600)
            _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            return cls(pki_dir, cert, key, name)
        return cls.load(pki_dir, name)

    @classmethod
    def load(cls, pki_dir: Path, name: str = CA_NAME) -> "CertificateAuthority":
        """The existing CA `name` of `pki_dir`. Raises PKIError when it is missing or unreadable."""
        cert = load_certificate(pki_dir / f"{name}.crt")
        key = _load_key(pki_dir / f"{name}.key")
        return cls(pki_dir, cert, key, name)

    @property
    def cert_path(self) -> Path:
        return self.pki_dir / f"{self.name}.crt"

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, spec: CertSpec, validity: datetime.timedelta = CERT_VALIDITY, key=None) -> None:
        """Sign `spec` (a new key unless `key` is given) and write NAME.key then NAME.crt. A
        serving certificate's file is a chain, the CA after it: a server sends it whole, so a
        joining machine gets the CA from the handshake and pins it by hash (cluster.join)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(spec, key.public_key(), validity)
        chain = self.cert_pem() if spec.server else b""
        _write(self.pki_dir / f"{spec.name}.key", _key_pem(key), 0o600)
        _write(self.pki_dir / f"{spec.name}.crt", cert.public_bytes(serialization.Encoding.PEM) + chain, 0o644)

    def _sign(self, spec: CertSpec, public_key, validity: datetime.timedelta) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations),
                             x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)])
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else [])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE)
                   .not_valid_after(min(now + validity, self.cert.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        sans = [x509.DNSName(n) for n in spec.dns_names] + [x509.IPAddress(ipaddress.ip_address(a))
                                                            for a in spec.ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def signed(self, cert: x509.Certificate) -> bool:
        """True when this CA signed `cert`."""
        try:
            cert.verify_directly_issued_by(self.cert)
            return True
        except Exception:   # noqa: BLE001 - InvalidSignature, ValueError, TypeError: not this CA's
            return False


def _ca_certificate(key, common_name: str = CA_COMMON_NAME) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def ensure_certificates(pki_dir: Path, specs: list[CertSpec],
                        renew_within: datetime.timedelta = RENEW_WITHIN,
                        ca_common_name: str = CA_COMMON_NAME, ca_name: str = CA_NAME) -> list[str]:
    """Make the CA `ca_name` if needed (CN `ca_common_name`) and every certificate of `specs`
    that is missing, not signed by that CA, different from its spec, or expiring within
    `renew_within`. Returns the names issued. Raises PKIError."""
    ca = CertificateAuthority.load_or_create(pki_dir, ca_common_name, ca_name)
    issued = []
    for spec in specs:
        if not _current(ca, spec, renew_within):
            ca.issue(spec)
            issued.append(spec.name)
    return issued


def _current(ca: CertificateAuthority, spec: CertSpec, renew_within: datetime.timedelta) -> bool:
    try:
        cert = load_certificate(ca.pki_dir / f"{spec.name}.crt")
        _load_key(ca.pki_dir / f"{spec.name}.key")
    except PKIError:
        return False
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    chained = not spec.server or ca.cert_pem() in (ca.pki_dir / f"{spec.name}.crt").read_bytes()
    return remaining > renew_within and ca.signed(cert) and spec_of(spec.name, cert) == spec and chained


def spec_of(name: str, cert: x509.Certificate) -> CertSpec:
    """The CertSpec a certificate was issued from (what `renew` issues again)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(sans.get_values_for_type(x509.DNSName))
        ips = tuple(str(a) for a in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = tuple(a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return CertSpec(name, cn[0].value if cn else "", orgs, client=ExtendedKeyUsageOID.CLIENT_AUTH in usages,
                    server=ExtendedKeyUsageOID.SERVER_AUTH in usages, dns_names=dns, ips=ips)


def certificate_names(pki_dir: Path) -> list[str]:
    """The names of the certificates in `pki_dir` other than the CAs, sorted."""
    return sorted(p.stem for p in pki_dir.glob("*.crt") if p.stem not in CA_NAMES)


def authorities(pki_dir: Path) -> list[CertificateAuthority]:
    """The CAs of `pki_dir` (the cluster CA, then the front-proxy CA when there is one).
    Raises PKIError when the cluster CA is missing or unreadable."""
    found = [CertificateAuthority.load(pki_dir)]
    if (pki_dir / f"{FRONT_PROXY_CA}.crt").exists():
        found.append(CertificateAuthority.load(pki_dir, FRONT_PROXY_CA))
    return found


def renew(pki_dir: Path, names: list[str]) -> list[str]:
    """Issue the named certificates again with the CA that issues each (`authority_of`), the
    same subject and names (a new key and a full validity); returns the names renewed.
    Raises PKIError for an unknown name or a missing CA."""
    cas = {ca.name: ca for ca in authorities(pki_dir)}
    known = certificate_names(pki_dir)
    for name in names:
        if name not in known:
            raise PKIError(f"no certificate {name!r} in {pki_dir} (known: {', '.join(known)})")
        if authority_of(name) not in cas:
            raise PKIError(f"no {authority_of(name)} in {pki_dir} to renew {name!r} with")
    for name in names:
        cas[authority_of(name)].issue(spec_of(name, load_certificate(pki_dir / f"{name}.crt")))
    return names


def expirations(pki_dir: Path) -> tuple[list[Issued], list[Issued]]:
    """(the certificates, the CAs) of `pki_dir` with their expiry; each certificate names the
    CA that signed it. Raises PKIError."""
    cas = authorities(pki_dir)
    rows = []
    for name in certificate_names(pki_dir):
        cert = load_certificate(pki_dir / f"{name}.crt")
        rows.append(Issued(name, cert.not_valid_after_utc, next((ca.name for ca in cas if ca.signed(cert)), "")))
    return rows, [Issued(ca.name, ca.cert.not_valid_after_utc, ca.name) for ca in cas]


def load_certificate(path: Path) -> x509.Certificate:
    """The PEM certificate at `path`. Raises PKIError."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as err:
        raise PKIError(f"certificate {path}: {getattr(err, 'strerror', None) or err}") from None


def _load_key(path: Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise PKIError(f"private key {path}: {getattr(err, 'strerror', None) or err}") from None


def ca_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the CA certificate's public key (SubjectPublicKeyInfo, DER), as
    kubeadm's --discovery-token-ca-cert-hash pins it."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashes_hex(spki)


def hashes_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically with `mode` (for keys: 0600)."""
    _write(path, data, mode)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode` (a key is never readable by others, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
