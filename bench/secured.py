"""The secured apiserver of bench/apiserver.py: TLS with client certificates (a CA made here
with `cryptography`), RBAC when the apiserver has it, the audit log with pkube's default
policy, Secrets encrypted at rest; and the TLS client contexts of its callers."""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parent.parent
AUDIT_POLICY = REPO / "pkube" / "cluster" / "templates" / "audit-policy.yaml"
BENCH_USER, BENCH_GROUP = "bench-user", "bench-writers"


def _name(common: str, org: str = "") -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key) -> None:
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path = directory / f"{name}.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def make_pki(directory: Path) -> None:
    """ca, apiserver (serving 127.0.0.1), admin (system:masters) and bench-user certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("bench-ca")).issuer_name(_name("bench-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_pair(directory, "ca", ca, ca_key)
    for name, subject, usage, sans in (
            ("apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
             [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            ("admin", _name("bench-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, []),
            ("user", _name(BENCH_USER, BENCH_GROUP), ExtendedKeyUsageOID.CLIENT_AUTH, [])):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_pair(directory, name, builder.sign(ca_key, hashes.SHA256()), key)


def client_context(directory: Path, who: str) -> ssl.SSLContext:
    """A TLS context trusting the bench CA and presenting ``who``'s certificate."""
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(str(directory / f"{who}.crt"), str(directory / f"{who}.key"))
    return context


def write_encryption_config(path: Path) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
                    "- resources: [secrets]\n  providers:\n"
                    f"  - aesgcm: {{keys: [{{name: key1, secret: {secret}}}]}}\n  - identity: {{}}\n")
    os.chmod(path, 0o600)


@dataclass
class SecuredSetup:
    flags: list[str]
    rbac: bool
    notes: list[str]


def secured_flags(directory: Path) -> SecuredSetup:
    """The apiserver flags of the secured run; RBAC only if this apiserver has the flag."""
    make_pki(directory / "pki")
    write_encryption_config(directory / "encryption.yaml")
    pki = directory / "pki"
    flags = ["--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
             "--client-ca-file", str(pki / "ca.crt"),
             "--audit-policy-file", str(AUDIT_POLICY), "--audit-log-path", str(directory / "audit.log"),
             "--encryption-provider-config", str(directory / "encryption.yaml")]
    help_text = subprocess.run([sys.executable, "-m", "pkube.apiserver", "--help"], capture_output=True,
                               text=True, cwd=REPO).stdout
    notes = []
    rbac = "--authorization-mode" in help_text
    if rbac:
        flags += ["--authorization-mode", "Node,RBAC"]
    else:
        notes.append("this apiserver has no --authorization-mode yet: the secured run has no RBAC")
    return SecuredSetup(flags, rbac, notes)


def bench_user_binding() -> dict:
    """bench-writers may edit the default namespace (the built-in ClusterRole edit)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "bench-writers", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BENCH_GROUP}]}
