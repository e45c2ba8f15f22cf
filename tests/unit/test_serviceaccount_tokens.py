"""ServiceAccount tokens without an apiserver: key files, kid, the claims, the liveness rules
of the cache (a terminating pod's token lasts a minute past its grace period) and the admission
plugin's volume."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pkube.apiserver import errors
from pkube.apiserver.admission import CREATE, AdmissionRequest
from pkube.apiserver.auth.serviceaccounts import (
    BoundObject, KeyFileError, ServiceAccountAuthenticator, ServiceAccountCache, TokenIssuer, key_id,
    load_private_key, load_public_keys,
)
from pkube.apiserver.auth.serviceaccounts_admission import MOUNT_PATH, ServiceAccountAdmission

NOW = 1_800_000_000.0


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_key_files_hold_public_and_private_keys_in_any_mix(tmp_path):
    ec_key, rsa_key = ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)
    (tmp_path / "keys.pem").write_bytes(_pem_public(ec_key) + _pem_private(rsa_key))
    keys = load_public_keys(str(tmp_path / "keys.pem"))
    assert [key_id(k) for k in keys] == [key_id(ec_key.public_key()), key_id(rsa_key.public_key())]
    (tmp_path / "signing.pem").write_bytes(_pem_private(ec_key))
    assert key_id(load_private_key(str(tmp_path / "signing.pem")).public_key()) == key_id(ec_key.public_key())
    (tmp_path / "empty.pem").write_text("nothing")
    with pytest.raises(KeyFileError, match="no PEM key found"):
        load_public_keys(str(tmp_path / "empty.pem"))
    with pytest.raises(KeyFileError, match="missing.pem"):
        load_private_key(str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("key, algorithm", [(ec.generate_private_key(ec.SECP256R1()), "ES256"),
                                            (rsa.generate_private_key(65537, 2048), "RS256")])
def test_tokens_carry_kubernetes_claims(key, algorithm):
    issuer = TokenIssuer(key, clock=lambda: NOW)
    token, exp = issuer.issue("ns", "sa", "sa-uid", ["api"], 600, BoundObject("Pod", "p", "p-uid", "n1", "n1-uid"))
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == (algorithm, key_id(key.public_key()))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert exp == claims["exp"] == NOW + 600 and claims["iat"] == claims["nbf"] == NOW
    assert claims["sub"] == "system:serviceaccount:ns:sa" and claims["aud"] == ["api"]
    assert claims["kubernetes.io"] == {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "sa-uid"},
                                       "pod": {"name": "p", "uid": "p-uid"}, "node": {"name": "n1", "uid": "n1-uid"}}


class FakeMirror:
    def __init__(self, objects):
        self.objects = objects


def _cache(pod_meta: dict) -> ServiceAccountCache:
    cache = ServiceAccountCache(storage=None, clock=lambda: NOW)
    cache.accounts = FakeMirror({"ns/sa": {"metadata": {"uid": "sa-uid"}}})
    cache.pods = FakeMirror({"ns/p": {"metadata": {"uid": "p-uid", **pod_meta}}})
    cache.secrets = FakeMirror({})
    return cache


@pytest.mark.parametrize("pod_meta, alive", [
    ({}, True),
    ({"deletionTimestamp": "2027-01-15T08:00:00Z"}, True),        # terminating, grace still running
    ({"deletionTimestamp": "2027-01-15T07:59:30Z"}, True),        # grace ended 30 s ago
    ({"deletionTimestamp": "2027-01-15T07:58:00Z"}, False),       # ended 2 minutes ago
])
def test_a_terminating_pods_token_lasts_a_minute_past_its_grace_period(pod_meta, alive):
    assert NOW == 1_800_000_000.0                                   # 2027-01-15T08:00:00Z
    key = ec.generate_private_key(ec.SECP256R1())
    token, _ = TokenIssuer(key, clock=lambda: NOW).issue("ns", "sa", "sa-uid", [TokenIssuer(key).issuer], 600,
                                                          BoundObject("Pod", "p", "p-uid"))
    authenticator = ServiceAccountAuthenticator([key.public_key()], lookup=_cache(pod_meta), clock=lambda: NOW)
    if alive:
        assert asyncio.run(authenticator.authenticate_token(token)).name == "system:serviceaccount:ns:sa"
    else:
        with pytest.raises(errors.ApiError) as refused:
            asyncio.run(authenticator.authenticate_token(token))
        assert refused.value.code == 401


def test_tokens_of_other_issuers_and_non_jwts_are_not_ours():
    key = ec.generate_private_key(ec.SECP256R1())
    authenticator = ServiceAccountAuthenticator([key.public_key()])
    other, _ = TokenIssuer(key, issuer="https://elsewhere").issue("ns", "sa", "u", ["https://elsewhere"], 600)
    assert asyncio.run(authenticator.authenticate_token(other)) is None
    assert asyncio.run(authenticator.authenticate_token("abcdef.0123456789abcdef")) is None


class Accounts:
    def __init__(self, **accounts):
        self.accounts = accounts

    def account(self, namespace, name):
        return self.accounts.get(name)


class Target:
    namespace = "ns"


def _admit(pod: dict, **accounts) -> dict:
    request = AdmissionRequest(CREATE, Target(), pod, None, None)
    request.__class__ = type("PodRequest", (AdmissionRequest,), {"kind": "Pod", "subresource": ""})
    ServiceAccountAdmission(Accounts(**accounts)).mutate(request)
    return pod


def test_a_container_that_mounts_the_path_itself_is_left_alone_and_the_volume_added_once():
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    pod = _admit({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "volumeMounts": [own]}, {"name": "b"}]}}, default={})
    spec = pod["spec"]
    assert spec["containers"][0]["volumeMounts"] == [own]
    assert spec["containers"][1]["volumeMounts"][0]["mountPath"] == MOUNT_PATH
    assert len([v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]) == 1


@pytest.mark.parametrize("pod_setting, account_setting, mounted", [
    (None, None, True), (None, False, False), (True, False, True), (False, True, False)])
def test_automount_the_pods_setting_wins_over_the_accounts(pod_setting, account_setting, mounted):
    spec = {"containers": [{"name": "a"}]}
    if pod_setting is not None:
        spec["automountServiceAccountToken"] = pod_setting
    account = {} if account_setting is None else {"automountServiceAccountToken": account_setting}
    pod = _admit({"metadata": {"name": "p"}, "spec": spec}, default=account)
    assert bool(pod["spec"].get("volumes")) is mounted
