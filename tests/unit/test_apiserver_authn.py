"""Authentication (apiserver.auth): client certificate identities, the bearer token chain and
its cache, static token files and bootstrap tokens — with fake requests and a fake store."""

from __future__ import annotations

import asyncio
import base64
import datetime

import pytest

from pkube.api import bootstraptoken
from pkube.apiserver import errors
from pkube.apiserver.auth.authn import RequestAuthenticator, TokenCache, bearer_token, certificate_identity
from pkube.apiserver.auth.tokens import BootstrapTokens, StaticTokens, TokenFileError
from pkube.apiserver.auth.user import ANONYMOUS, UserInfo
from pkube.apiserver.storage.interface import NotFound

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
ADMIN_PEER = {"subject": ((("organizationName", "system:masters"),), (("commonName", "kubernetes-admin"),)),
              "notAfter": "Dec  4 12:00:00 2027 GMT"}


class FakeRequest:
    def __init__(self, headers=None, peer=None):
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        tls = {"client_cert_chain": ["PEM"], "client_cert": peer} if peer else {"client_cert": None}
        self.scope = {"extensions": {"tls": tls}}


def authenticate(authenticator, request):
    return asyncio.run(authenticator(request))


def refused(authenticator, request) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as caught:
        authenticate(authenticator, request)
    return caught.value


def test_a_client_certificate_names_the_user_and_its_groups():
    user = authenticate(RequestAuthenticator(), FakeRequest(peer=ADMIN_PEER))
    assert user.name == "kubernetes-admin"
    assert user.groups == ("system:masters", "system:authenticated")


def test_the_certificate_wins_over_a_token_and_is_worked_out_once_per_connection():
    tokens = StaticTokens({"t": UserInfo("token-user")})
    request = FakeRequest({"Authorization": "Bearer t"}, peer=ADMIN_PEER)
    authenticator = RequestAuthenticator([tokens])
    assert authenticate(authenticator, request).name == "kubernetes-admin"
    request.scope["extensions"]["tls"]["client_cert"] = {"subject": ((("commonName", "other"),),),
                                                         "notAfter": ADMIN_PEER["notAfter"]}
    assert authenticate(authenticator, request).name == "kubernetes-admin"     # the connection's memo


def test_a_certificate_without_a_common_name_or_expired_since_the_handshake_is_401():
    nameless = {"subject": ((("organizationName", "x"),),), "notAfter": ADMIN_PEER["notAfter"]}
    assert refused(RequestAuthenticator(), FakeRequest(peer=nameless)).code == 401
    late = RequestAuthenticator(wall_clock=lambda: 4_000_000_000.0)     # 2096
    assert refused(late, FakeRequest(peer=ADMIN_PEER)).code == 401


def test_certificates_are_ignored_when_not_enabled():
    assert refused(RequestAuthenticator(client_certificates=False), FakeRequest(peer=ADMIN_PEER)).code == 401


def test_nothing_presented_is_anonymous_refused_with_kubernetes_status_unless_allowed():
    err = refused(RequestAuthenticator(), FakeRequest())
    assert (err.code, err.reason, err.message) == (401, "Unauthorized", "Unauthorized")
    assert authenticate(RequestAuthenticator(allow_anonymous=True), FakeRequest()) == ANONYMOUS


def test_static_tokens_work_and_a_wrong_or_non_bearer_one_is_401():
    tokens = StaticTokens({"good": UserInfo("alice", "1", ("dev",))})
    authenticator = RequestAuthenticator([tokens])
    alice = authenticate(authenticator, FakeRequest({"Authorization": "Bearer good"}))
    assert (alice.name, alice.uid, alice.groups) == ("alice", "1", ("dev", "system:authenticated"))
    for header in ("Bearer bad", "Basic Z29vZA==", "Bearer ", "good"):
        assert refused(authenticator, FakeRequest({"Authorization": header})).code == 401


class Recording:
    def __init__(self, answer):
        self.answer, self.asked = answer, []

    async def authenticate_token(self, token):
        self.asked.append(token)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_chain_asks_in_order_until_one_recognises_the_token():
    first, second, third = Recording(None), Recording(UserInfo("sa")), Recording(UserInfo("never"))
    user = authenticate(RequestAuthenticator([first, second, third]), FakeRequest({"Authorization": "Bearer x"}))
    assert user.name == "sa" and first.asked == ["x"] and third.asked == []


def test_a_recognised_but_invalid_token_stops_the_chain_with_401():
    expired, later = Recording(errors.unauthorized()), Recording(UserInfo("never"))
    assert refused(RequestAuthenticator([expired, later]), FakeRequest({"Authorization": "Bearer x"})).code == 401
    assert later.asked == []


def test_successes_are_cached_for_the_ttl_only():
    now = [0.0]
    source = Recording(UserInfo("bob"))
    authenticator = RequestAuthenticator([source], cache=TokenCache(ttl=10, clock=lambda: now[0]))
    request = FakeRequest({"Authorization": "Bearer x"})
    authenticate(authenticator, request)
    authenticate(authenticator, request)
    assert source.asked == ["x"]
    now[0] = 10.5
    authenticate(authenticator, request)
    assert source.asked == ["x", "x"]


def test_the_cache_is_bounded():
    cache = TokenCache(size=2)
    for token in "abc":
        cache.put(token, UserInfo(token))
    assert cache.get("c") is not None and cache.get("a") is None


def test_bearer_token_parsing():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") == ""


def test_certificate_identity_keeps_every_organization():
    peer = {"subject": ((("organizationName", "a"),), (("organizationName", "b"),), (("commonName", "u"),)),
            "notAfter": "Jan  1 00:00:00 2030 GMT"}
    user, not_after = certificate_identity(peer)
    assert user.groups == ("a", "b", "system:authenticated") and not_after > 1.8e9


def test_the_static_token_file_is_kubernetes_csv(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text('# comment\nt1,alice,1001,"dev,ops"\nt2,bob,1002\n\n')
    tokens = StaticTokens.load(str(path))
    assert asyncio.run(tokens.authenticate_token("t1")) == UserInfo("alice", "1001", ("dev", "ops"))
    assert asyncio.run(tokens.authenticate_token("t2")).groups == ()
    assert asyncio.run(tokens.authenticate_token("t3")) is None
    path.write_text("t1,alice\n")
    with pytest.raises(TokenFileError, match="tokens.csv:1"):
        StaticTokens.load(str(path))
    with pytest.raises(TokenFileError, match="missing"):
        StaticTokens.load(str(tmp_path / "missing"))


class FakeStorage:
    def __init__(self, objects):
        self.objects = objects

    async def get(self, key):
        if key not in self.objects:
            raise NotFound(key)
        return self.objects[key]


def stored(token: bootstraptoken.BootstrapToken, **changes) -> FakeStorage:
    secret = token.to_secret()
    secret["metadata"].update(changes)
    return FakeStorage({f"/registry/secrets/kube-system/{secret['metadata']['name']}": secret})


def bootstrap(storage, token: str):
    return asyncio.run(BootstrapTokens(storage, now=lambda: NOW).authenticate_token(token))


def test_a_bootstrap_token_authenticates_as_system_bootstrap_id_until_it_expires():
    token = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef", NOW + datetime.timedelta(hours=1))
    user = bootstrap(stored(token), token.token)
    assert user.name == "system:bootstrap:abcdef"
    assert user.groups == ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token")
    expired = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef", NOW - datetime.timedelta(seconds=1))
    with pytest.raises(errors.ApiError) as caught:
        bootstrap(stored(expired), expired.token)
    assert caught.value.code == 401


def test_a_bootstrap_token_with_the_wrong_secret_no_auth_usage_or_being_deleted_is_401():
    token = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef")
    signing_only = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef", usages=("signing",))
    for storage, presented in ((stored(token), "abcdef.0123456789abcdee"),
                               (stored(signing_only), token.token),
                               (stored(token, deletionTimestamp="2026-12-04T12:00:00Z"), token.token)):
        with pytest.raises(errors.ApiError):
            bootstrap(storage, presented)


def test_tokens_not_of_the_bootstrap_form_or_without_a_secret_are_not_ours():
    token = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef")
    assert bootstrap(stored(token), "eyJhbGciOi.jwt.like") is None
    assert bootstrap(FakeStorage({}), token.token) is None


def test_extra_groups_outside_system_bootstrappers_are_dropped():
    token = bootstraptoken.BootstrapToken("abcdef", "0123456789abcdef",
                                          extra_groups=("system:bootstrappers:worker", "system:masters"))
    assert bootstrap(stored(token), token.token).groups == ("system:bootstrappers", "system:bootstrappers:worker")


def test_a_bootstrap_token_secret_round_trips_and_malformed_ones_are_ignored():
    token = bootstraptoken.generate(datetime.timedelta(hours=24), "join", now=NOW)
    assert bootstraptoken.TOKEN.match(token.token)
    assert bootstraptoken.BootstrapToken.from_secret(token.to_secret()) == token
    secret = token.to_secret()
    secret["type"] = "Opaque"
    assert bootstraptoken.BootstrapToken.from_secret(secret) is None
    secret = token.to_secret()
    secret["data"]["expiration"] = base64.b64encode(b"tomorrow").decode()
    assert bootstraptoken.BootstrapToken.from_secret(secret) is None
