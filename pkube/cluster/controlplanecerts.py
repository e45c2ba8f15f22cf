"""What every control-plane member must share, carried to a joining member as kubeadm's
``upload-certs`` carries it: encrypted in a Secret, with a key that never enters the cluster.

A second apiserver must hold the same cluster CA (it signs and verifies certificates), the
same front-proxy CA (extension apiservers trust one front-proxy CA whichever apiserver
proxies to them; kubeadm shares front-proxy-ca.crt/key alike), the etcd CA (its etcd member and client certificates are made from it), the
same ServiceAccount key pair (a token one apiserver issued is valid at every other) and the
same encryption key for Secrets at rest (each reads what another wrote). ``upload`` puts them
in the Secret ``kube-system/pkube-control-plane-certs``, each file AES-GCM-encrypted with a
32-byte *certificate key* printed to the admin (hex); only the bootstrap tokens' group may
read that Secret (a Role and RoleBinding made with it), and it is owned by the bootstrap
token it was made for, so it is garbage-collected with that token. ``download`` is what
``pkube join --control-plane --certificate-key K`` does: it decrypts every file first and
writes none unless all decrypt (the key is checked by AES-GCM's tag).

``upload_with_new_key`` is `pkube certs upload`, kubeadm's ``init phase upload-certs
--upload-certs``: a fresh key, and the upload owned by a bootstrap token made for that alone
(no usages: it authenticates nobody) that expires in two hours, as kubeadm's does. The upload
carries its expiry (annotation ``pkube.io/expires``) and ``download`` refuses it afterwards;
the Secret itself goes when the expired token is deleted (`pkube token create` and `list`
delete expired tokens; the garbage collector then deletes what the token owns): pkube has no
token-cleaner controller yet.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pkube.client.errors import ApiError
from pkube.client.resources import ROLEBINDINGS, ROLES, SECRETS
from pkube.cluster import etcdpki
from pkube.cluster import secrets as atrest
from pkube.cluster import serviceaccountkey

NAMESPACE = "kube-system"
SECRET = "pkube-control-plane-certs"
READER = "pkube:control-plane-certs-reader"
BOOTSTRAPPERS = "system:bootstrappers"
NONCE_BYTES = 12
UPLOAD_TTL = datetime.timedelta(hours=2)
EXPIRES = "pkube.io/expires"


class CertificateKeyError(RuntimeError):
    """A user-facing failure (bad or wrong key, nothing uploaded): printed as one line."""


def shared_files(data_dir: Path) -> dict[str, tuple[Path, int]]:
    """Secret data key -> (file under ``data_dir``, its mode) of what members share."""
    pki = data_dir / "pki"
    etcd = etcdpki.etcd_pki_dir(pki)
    return {"ca.crt": (pki / "ca.crt", 0o644), "ca.key": (pki / "ca.key", 0o600),
            "front-proxy-ca.crt": (pki / "front-proxy-ca.crt", 0o644),
            "front-proxy-ca.key": (pki / "front-proxy-ca.key", 0o600),
            "etcd-ca.crt": (etcd / "ca.crt", 0o644), "etcd-ca.key": (etcd / "ca.key", 0o600),
            serviceaccountkey.PRIVATE_KEY: (pki / serviceaccountkey.PRIVATE_KEY, 0o600),
            serviceaccountkey.PUBLIC_KEY: (pki / serviceaccountkey.PUBLIC_KEY, 0o644),
            "encryption-config.yaml": (atrest.encryption_config_path(data_dir), 0o600)}


def new_certificate_key() -> str:
    """A fresh certificate key: 32 random bytes, hex."""
    return secrets.token_hex(32)


def _cipher(key_hex: str) -> AESGCM:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CertificateKeyError("a certificate key is 64 hex digits (pkube certs upload prints one)")
    return AESGCM(key)


def seal(key_hex: str, name: str, plain: bytes) -> str:
    """base64(nonce || AES-GCM(plain)), bound to ``name`` (so files cannot be swapped)."""
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + _cipher(key_hex).encrypt(nonce, plain, name.encode())).decode()


def unseal(key_hex: str, name: str, sealed: str) -> bytes:
    """The inverse of ``seal``; CertificateKeyError when the key is not the one it was sealed with."""
    raw = base64.b64decode(sealed)
    try:
        return _cipher(key_hex).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], name.encode())
    except InvalidTag:
        raise CertificateKeyError("the certificate key does not open the control plane's certificates "
                                  "(a key from another upload, or mistyped)") from None


def upload_with_new_key(client, data_dir: Path, now: datetime.datetime | None = None) -> tuple[str, datetime.datetime]:
    """`pkube certs upload` (see the module docstring): (the fresh certificate key, when the
    upload expires). Raises OSError (a shared file missing), ApiError."""
    from pkube.api import bootstraptoken
    from pkube.cluster import tokens
    tokens.remove_expired(client, now)
    owner = dataclasses.replace(bootstraptoken.generate(UPLOAD_TTL, "owns the control plane's uploaded certificates "
                                                        "(pkube certs upload)", now=now), usages=(), extra_groups=())
    client.create(SECRETS, owner.to_secret(), NAMESPACE)
    key = new_certificate_key()
    upload(client, data_dir, key, owner.id, expires=owner.expiration)
    return key, owner.expiration


def upload(client, data_dir: Path, key_hex: str, token_id: str, expires: datetime.datetime | None = None) -> None:
    """Seal the shared files of ``data_dir`` into the Secret (replacing an older upload), owned by
    the bootstrap token ``token_id``'s Secret, readable by bootstrap tokens; refused by
    ``download`` after ``expires`` (None: never). Raises OSError, ApiError, CertificateKeyError."""
    data = {name: seal(key_hex, name, path.read_bytes()) for name, (path, _) in shared_files(data_dir).items()}
    token = client.get(SECRETS, f"bootstrap-token-{token_id}", NAMESPACE)
    owner = {"apiVersion": "v1", "kind": "Secret", "name": token["metadata"]["name"],
             "uid": token["metadata"]["uid"]}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": SECRET, "namespace": NAMESPACE, "ownerReferences": [owner],
                           **({"annotations": {EXPIRES: _timestamp(expires)}} if expires else {})},
              "data": {name: base64.b64encode(value.encode()).decode() for name, value in data.items()}}
    _create_or_replace(client, SECRETS, secret)
    _create_or_replace(client, ROLES, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": READER, "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get"]}]})
    _create_or_replace(client, ROLEBINDINGS, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": READER, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BOOTSTRAPPERS}]})


def download(client, key_hex: str, data_dir: Path) -> list[Path]:
    """Fetch and open the shared files, then write them under ``data_dir`` (modes as on the first
    member); the paths written. Nothing is written unless every file opens. Raises ApiError,
    CertificateKeyError, OSError."""
    try:
        secret = client.get(SECRETS, SECRET, NAMESPACE)
    except ApiError as exc:
        if exc.code == 404:
            raise CertificateKeyError("the cluster has no uploaded control-plane certificates "
                                      "(run `pkube certs upload` on a control-plane member)") from None
        raise
    _check_not_expired(secret)
    data = secret.get("data") or {}
    files = shared_files(data_dir)
    missing = sorted(set(files) - set(data))
    if missing:
        raise CertificateKeyError(f"the uploaded control-plane certificates lack {', '.join(missing)}")
    opened = {name: unseal(key_hex, name, base64.b64decode(data[name]).decode()) for name in files}
    for name, (path, mode) in files.items():
        _write(path, opened[name], mode)
    return [path for path, _ in files.values()]


def _timestamp(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_not_expired(secret: dict) -> None:
    """CertificateKeyError when the upload carries an expiry that has passed."""
    expires = ((secret.get("metadata") or {}).get("annotations") or {}).get(EXPIRES)
    if not expires:
        return
    try:
        when = datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise CertificateKeyError(f"the uploaded control-plane certificates carry a bad {EXPIRES}: {expires!r}") from None
    if when <= datetime.datetime.now(datetime.timezone.utc):
        raise CertificateKeyError(f"the uploaded control-plane certificates expired at {expires} (they last "
                                  f"{UPLOAD_TTL.seconds // 3600} h): run `pkube certs upload` on a control-plane "
                                  f"member for a new certificate key")


def _create_or_replace(client, resource, obj: dict) -> None:
    try:
        client.create(resource, obj, NAMESPACE)
    except ApiError as exc:
        if exc.code != 409:
            raise
        current = client.get(resource, obj["metadata"]["name"], NAMESPACE)
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        client.replace(resource, obj, NAMESPACE)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` (a reader never sees half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(partial, mode)
    os.replace(partial, path)
