"""ServiceAccount tokens: signed JWTs as Kubernetes' bound tokens, and their authenticator.

A token is a JWT (ES256 for an EC signing key, RS256 for an RSA one; the header's ``kid`` is
the unpadded base64url SHA-256 of the public key's DER, as kube-apiserver names keys) with the
claims of Kubernetes' bound service account tokens::

    iss, sub (system:serviceaccount:NS:NAME), aud, exp, iat, nbf, jti,
    kubernetes.io: {namespace, serviceaccount: {name, uid}, pod: {name, uid}, node: {name, uid}}

(``pod`` or ``secret`` when the token is bound to one; ``node`` for a pod on a node).

``ServiceAccountAuthenticator`` accepts a token of our issuer whose signature verifies with
one of the verification keys, that has not expired, that is meant for one of the apiserver's
audiences, whose ServiceAccount still exists with the same uid and whose bound object (pod or
Secret) too: deleting the pod revokes its tokens. Existence is read from ``ServiceAccountCache``
(kept by watches), never from the store per request.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pkube.apiserver import errors
from pkube.apiserver.auth.mirror import Mirror
from pkube.apiserver.auth.user import SERVICE_ACCOUNT_PREFIX, UserInfo

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ACCOUNTS_GROUP = "system:serviceaccounts"
CLAIMS = "kubernetes.io"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


POD_DELETION_GRACE = 60.0


class KeyFileError(ValueError):
    """A key file that cannot be read (the message names the file)."""


def _unix(timestamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (0 when unreadable: long past)."""
    try:
        return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return 0.0


def service_account_user(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def split_user(username: str) -> Optional[tuple[str, str]]:
    """(namespace, name) of ``system:serviceaccount:NS:NAME``; None for any other user."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
    return (namespace, name) if namespace and name and ":" not in name else None


def _algorithm(key) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ES256"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    raise KeyFileError(f"unsupported key type {type(key).__name__}: want an EC P-256 or RSA key")


def key_id(public_key) -> str:
    """kube-apiserver's ``kid``: unpadded base64url of the SHA-256 of the PKIX DER public key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def load_private_key(path: str):
    """The PEM private key in ``path``; raises KeyFileError."""
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise KeyFileError(f"{path}: {getattr(err, 'strerror', None) or err}") from None


def load_public_keys(path: str) -> list:
    """The public keys of a PEM file holding public keys, private keys or certificates (as
    --service-account-key-file accepts); raises KeyFileError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise KeyFileError(f"{path}: {err.strerror}") from None
    keys = [_public_of(m.group(0), m.group(1), path) for m in PEM_BLOCK.finditer(data)]
    if not keys:
        raise KeyFileError(f"{path}: no PEM key found")
    return keys


def _public_of(pem: bytes, label: bytes, path: str):
    try:
        if label.endswith(b"PRIVATE KEY"):
            return serialization.load_pem_private_key(pem, password=None).public_key()
        if label == b"CERTIFICATE":
            return x509.load_pem_x509_certificate(pem).public_key()
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"{path}: {err}") from None


@dataclass(frozen=True)
class BoundObject:
    """What a token is bound to: ``kind`` Pod or Secret, its name and uid; for a pod, the
    node it runs on (``node_name``/``node_uid``, empty when unscheduled)."""

    kind: str
    name: str
    uid: str
    node_name: str = ""
    node_uid: str = ""


class TokenIssuer:
    """Signs tokens with the --service-account-signing-key-file key. ``clock`` gives unix
    seconds."""

    def __init__(self, signing_key, issuer: str = DEFAULT_ISSUER, clock: Callable[[], float] = time.time):
        self.key, self.issuer, self.clock = signing_key, issuer, clock
        self.algorithm = _algorithm(signing_key)
        self.kid = key_id(signing_key.public_key())

    def issue(self, namespace: str, account: str, account_uid: str, audiences: Sequence[str],
              expiration_seconds: int, bound: Optional[BoundObject] = None) -> tuple[str, int]:
        """(the token, its exp as unix seconds)."""
        now = int(self.clock())
        scoped: dict = {"namespace": namespace, "serviceaccount": {"name": account, "uid": account_uid}}
        if bound is not None:
            scoped[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
            if bound.node_name:
                scoped["node"] = {"name": bound.node_name, "uid": bound.node_uid}
        claims = {"iss": self.issuer, "sub": service_account_user(namespace, account), "aud": list(audiences),
                  "exp": now + expiration_seconds, "iat": now, "nbf": now, "jti": str(uuid.uuid4()),
                  CLAIMS: scoped}
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid})
        return token, claims["exp"]


class ServiceAccountCache:
    """The ServiceAccounts, pods and Secrets the authenticator and the admission plugin check,
    by ``namespace/name``, kept by watches (``start`` returns once they are listed). ``clock``
    gives unix seconds."""

    def __init__(self, storage, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.accounts = Mirror(storage, "/registry/serviceaccounts/")
        self.pods = Mirror(storage, "/registry/pods/")
        self.secrets = Mirror(storage, "/registry/secrets/")

    async def start(self) -> None:
        for mirror in (self.accounts, self.pods, self.secrets):
            await mirror.start()

    async def stop(self) -> None:
        for mirror in (self.secrets, self.pods, self.accounts):
            await mirror.stop()

    def account(self, namespace: str, name: str) -> Optional[dict]:
        return self.accounts.objects.get(f"{namespace}/{name}")

    def uid_of(self, kind: str, namespace: str, name: str) -> Optional[str]:
        """The uid of a live ServiceAccount, Pod or Secret; None when there is none, when it is
        being deleted, or for a pod, when its deletion's grace period ended more than a minute
        ago (Kubernetes lets a terminating pod's token work that long)."""
        mirror = {"ServiceAccount": self.accounts, "Pod": self.pods, "Secret": self.secrets}[kind]
        obj = mirror.objects.get(f"{namespace}/{name}")
        deleting = obj["metadata"].get("deletionTimestamp") if obj is not None else None
        if obj is None or (deleting and (kind != "Pod" or _unix(deleting) < self.clock() - POD_DELETION_GRACE)):
            return None
        return obj["metadata"].get("uid")


class ServiceAccountAuthenticator:
    """The bearer token authenticator of ServiceAccount JWTs (apiserver.auth.authn.TokenAuthenticator).
    ``keys`` verify signatures; ``audiences`` are the apiserver's (--api-audiences, default the
    issuer); ``lookup`` is the ServiceAccountCache (None: existence is not checked, for tests of
    the signature alone)."""

    def __init__(self, keys: Sequence, issuer: str = DEFAULT_ISSUER, audiences: Sequence[str] = (),
                 lookup: Optional[ServiceAccountCache] = None, clock: Callable[[], float] = time.time):
        self.keys = {key_id(k): k for k in keys}
        self.issuer, self.audiences = issuer, tuple(audiences) or (issuer,)
        self.lookup, self.clock = lookup, clock

    async def authenticate_token(self, token: str) -> Optional[UserInfo]:
        return self.user_of(self.verified_claims(token)) if self.is_ours(token) else None

    def is_ours(self, token: str) -> bool:
        """True for a JWT of our issuer (verified or not)."""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == self.issuer
        except jwt.PyJWTError:
            return False

    def verified_claims(self, token: str, audiences: Sequence[str] = ()) -> dict:
        """The claims of a token of ours whose signature, times and audience check; 401
        otherwise. ``audiences`` default to the apiserver's."""
        for key in self._keys_for(token):
            try:
                claims = jwt.decode(token, key, algorithms=[_algorithm(key)], issuer=self.issuer,
                                    audience=list(audiences or self.audiences),
                                    options={"require": ["exp", "iat", "sub"], "verify_iat": False,
                                             "verify_exp": False, "verify_nbf": False})
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise errors.unauthorized() from None
            return self._in_time(claims)
        raise errors.unauthorized()

    def _in_time(self, claims: dict) -> dict:
        """``claims`` when ``nbf`` <= now < ``exp`` by ``clock``; 401 otherwise."""
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)) or not nbf <= now < exp:
            raise errors.unauthorized()
        return claims

    def _keys_for(self, token: str) -> list:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise errors.unauthorized() from None
        return [self.keys[kid]] if kid in self.keys else list(self.keys.values())

    def user_of(self, claims: dict) -> UserInfo:
        """The user of verified ``claims``; 401 when the account or bound object is gone."""
        scoped = claims.get(CLAIMS) or {}
        names = split_user(claims.get("sub", ""))
        if names is None or not isinstance(scoped, dict):
            raise errors.unauthorized()
        namespace, name = names
        account = scoped.get("serviceaccount") or {}
        extra = {EXTRA_CREDENTIAL_ID: [f"JTI={claims['jti']}"]} if claims.get("jti") else {}
        if self.lookup is not None:
            self._check_alive("ServiceAccount", namespace, name, account.get("uid"))
            for kind in ("Pod", "Secret"):
                ref = scoped.get(kind.lower())
                if ref:
                    self._check_alive(kind, namespace, ref.get("name", ""), ref.get("uid"))
        if scoped.get("pod"):
            extra.update({EXTRA_POD_NAME: [scoped["pod"].get("name", "")], EXTRA_POD_UID: [scoped["pod"].get("uid", "")]})
        if scoped.get("node"):
            extra.update({EXTRA_NODE_NAME: [scoped["node"].get("name", "")],
                          EXTRA_NODE_UID: [scoped["node"].get("uid", "")]})
        return UserInfo(service_account_user(namespace, name), account.get("uid", ""),
                        (ACCOUNTS_GROUP, f"{ACCOUNTS_GROUP}:{namespace}"), extra)

    def _check_alive(self, kind: str, namespace: str, name: str, uid: Optional[str]) -> None:
        live = self.lookup.uid_of(kind, namespace, name)
        if live is None or (uid and live != uid):
            raise errors.unauthorized()
