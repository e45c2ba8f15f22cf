"""The kubelet's serving certificate: self-signed, made once and reused, as a kubelet
without `--tls-cert-file` does (it writes kubelet.crt / kubelet.key into its cert dir).

One function on purpose: a CA-signed certificate (the node's, from the cluster CA) will
take its place without the server noticing.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "kubelet.crt"
KEY_FILE = "kubelet.key"
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=1)


def ensure_serving_cert(cert_dir: str, hostnames: list[str], ips: list[str]) -> tuple[str, str]:
    """(cert_path, key_path) of a serving certificate for `hostnames` and `ips` under
    `cert_dir`: the one already there when it covers them and is not about to expire, else a
    new self-signed one (written key first, each file atomically, the key readable by root
    only). Raises ValueError on a malformed IP, OSError when the directory is not writable."""
    addresses = [ipaddress.ip_address(ip) for ip in ips]
    cert_path, key_path = os.path.join(cert_dir, CERT_FILE), os.path.join(cert_dir, KEY_FILE)
    if _usable(cert_path, key_path, hostnames, addresses):
        return cert_path, key_path
    os.makedirs(cert_dir, mode=0o755, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostnames, addresses)
    _write_atomically(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _self_signed(key, hostnames: list[str], addresses: list) -> x509.Certificate:
    """Kubernetes' self-signed kubelet certificate: CN `<first hostname>@<unix time>`, the
    names and addresses as SANs, usable for serving."""
    now = datetime.datetime.now(datetime.timezone.utc)
    first = hostnames[0] if hostnames else (str(addresses[0]) if addresses else "kubelet")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{first}@{int(now.timestamp())}")])
    sans = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(a) for a in addresses]
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def _usable(cert_path: str, key_path: str, hostnames: list[str], addresses: list) -> bool:
    """True when both files exist, the certificate covers every name and address, and it is
    valid for more than RENEW_BEFORE."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        if not os.path.exists(key_path):
            return False
    except (OSError, ValueError):
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not hostnames and not addresses
    names, ips = set(sans.get_values_for_type(x509.DNSName)), set(sans.get_values_for_type(x509.IPAddress))
    fresh = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > RENEW_BEFORE
    return fresh and set(hostnames) <= names and set(addresses) <= ips


def _write_atomically(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
