"""The ServiceAccount token key pair of a local cluster, as kubeadm keeps it: DIR/pki/sa.key
(the apiserver signs tokens with it; 0600) and DIR/pki/sa.pub (what tokens are verified with),
made once by `pkube up` and kept across restarts, so tokens stay valid; and the apiserver's and
controller-manager's flags that use them and the cluster CA."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PRIVATE_KEY = "sa.key"
PUBLIC_KEY = "sa.pub"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def ensure_key_pair(pki_dir: Path) -> bool:
    """Make sa.key (EC P-256, PKCS#8 PEM, 0600) and sa.pub in ``pki_dir`` when sa.key is missing;
    True when they were made. Raises OSError."""
    private = pki_dir / PRIVATE_KEY
    if private.exists():
        if not (pki_dir / PUBLIC_KEY).exists():
            key = serialization.load_pem_private_key(private.read_bytes(), password=None)
            _write(pki_dir / PUBLIC_KEY, _public_pem(key), 0o644)
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    _write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(pki_dir / PUBLIC_KEY, _public_pem(key), 0o644)
    return True


def _public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` whole (a temporary file renamed), created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def apiserver_flags(pki_dir: Path) -> list[str]:
    """kube-apiserver's ServiceAccount token flags."""
    return ["--service-account-signing-key-file", str(pki_dir / PRIVATE_KEY),
            "--service-account-key-file", str(pki_dir / PUBLIC_KEY), "--service-account-issuer", ISSUER]


def controller_manager_flags(pki_dir: Path) -> list[str]:
    """The controller-manager's: the CA published as kube-root-ca.crt and the CSR signer's CA."""
    return ["--root-ca-file", str(pki_dir / "ca.crt"), "--cluster-signing-cert-file", str(pki_dir / "ca.crt"),
            "--cluster-signing-key-file", str(pki_dir / "ca.key")]
