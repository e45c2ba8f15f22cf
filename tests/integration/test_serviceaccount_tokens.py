"""ServiceAccount tokens on a real apiserver: TokenRequest issues a JWT the apiserver accepts as
the ServiceAccount; an expired token, one for another audience, one of a deleted pod or of a
recreated ServiceAccount are 401; TokenReview; the ServiceAccount admission plugin."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from pkube.apiserver import errors
from pkube.apiserver.auth.serviceaccounts import DEFAULT_ISSUER, TokenIssuer
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.tokenrequest import ServiceAccountTokens
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver

ADMIN_TOKEN = "admin-token-for-tests"
NS = "default"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def signing_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def secured(etcd, signing_key):
    """An apiserver with an admin token and ServiceAccount tokens (no authorizer: every
    authenticated user may do anything; no token cache, so revocation shows at once)."""
    chain = []

    async def authenticate(request):
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in (ADMIN_TOKEN, ""):          # no credentials: kubectl and the official client over HTTP
            return UserInfo("admin", groups=("system:masters", "system:authenticated"))
        user = await chain[0].authenticate_token(token) if chain else None
        if user is None:
            raise errors.unauthorized()
        return user

    def service_accounts(storage):
        tokens = ServiceAccountTokens(storage, TokenIssuer(signing_key), [signing_key.public_key()], DEFAULT_ISSUER)
        chain.append(tokens.authenticator)
        return tokens

    thread, running = start_apiserver(etcd, authenticator=authenticate, service_accounts=service_accounts)
    try:
        yield running
    finally:
        stop_apiserver(thread)


def _client(api, token: str) -> httpx.Client:
    return api.client(headers={"Authorization": f"Bearer {token}"})


def _create(admin, path: str, obj: dict) -> dict:
    r = admin.post(path, json=obj)
    assert r.status_code == 201, r.text
    return r.json()


def _account(admin, name: str) -> dict:
    return _create(admin, f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": name}})


def _pod(admin, name: str, account: str) -> dict:
    return _create(admin, f"/api/v1/namespaces/{NS}/pods", {"metadata": {"name": name}, "spec": {
        "serviceAccountName": account, "containers": [{"name": "c", "image": "busybox"}]}})


def _token(admin, account: str, spec: dict | None = None) -> httpx.Response:
    return admin.post(f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token",
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec or {}})


def _whoami(api, token: str) -> httpx.Response:
    with _client(api, token) as c:
        return c.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def _status_of(api, token: str) -> int:
    with _client(api, token) as c:
        return c.get(f"/api/v1/namespaces/{NS}/pods").status_code


def test_token_request_gives_a_token_the_apiserver_accepts_as_the_account(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        account = _account(admin, "robot")
        r = _token(admin, "robot")
        assert r.status_code == 201, r.text
        answer = r.json()
        assert answer["kind"] == "TokenRequest" and answer["spec"]["expirationSeconds"] == 3600
        assert answer["status"]["expirationTimestamp"].endswith("Z")
        token = answer["status"]["token"]
        assert _status_of(secured, token) == 200
        me = _whoami(secured, token).json()["status"]["userInfo"]
        assert me["username"] == "system:serviceaccount:default:robot"
        assert me["uid"] == account["metadata"]["uid"]
        assert set(me["groups"]) >= {"system:serviceaccounts", "system:serviceaccounts:default"}


def test_token_bound_to_a_pod_carries_it_and_dies_with_it(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        _account(admin, "bound")
        pod = _pod(admin, "holder", "bound")
        r = _token(admin, "bound", {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "holder",
                                                        "uid": pod["metadata"]["uid"]}, "expirationSeconds": 600})
        assert r.status_code == 201, r.text
        token = r.json()["status"]["token"]
        extra = _whoami(secured, token).json()["status"]["userInfo"]["extra"]
        assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]
        assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
        assert admin.delete(f"/api/v1/namespaces/{NS}/pods/holder").status_code == 200
        wait_for(lambda: _status_of(secured, token) == 401, 10)
        # a new pod of the same name does not bring the token back
        _pod(admin, "holder", "bound")
        unauthorized = _whoami(secured, token)
        assert unauthorized.status_code == 401 and unauthorized.json()["reason"] == "Unauthorized"


def test_a_recreated_service_account_does_not_accept_old_tokens(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        _account(admin, "phoenix")
        token = _token(admin, "phoenix").json()["status"]["token"]
        assert _status_of(secured, token) == 200
        admin.delete(f"/api/v1/namespaces/{NS}/serviceaccounts/phoenix")
        _account(admin, "phoenix")
        wait_for(lambda: _status_of(secured, token) == 401, 10)


def test_expired_and_foreign_tokens_are_401(secured, signing_key):
    with _client(secured, ADMIN_TOKEN) as admin:
        account = _account(admin, "old")
    uid = account["metadata"]["uid"]
    past = TokenIssuer(signing_key, clock=lambda: time.time() - 7200)
    expired, _ = past.issue(NS, "old", uid, [DEFAULT_ISSUER], 600)
    assert _status_of(secured, expired) == 401
    fresh, _ = TokenIssuer(signing_key).issue(NS, "old", uid, [DEFAULT_ISSUER], 600)
    assert _status_of(secured, fresh) == 200          # the same token, in time, is accepted
    other_audience, _ = TokenIssuer(signing_key).issue(NS, "old", uid, ["vault"], 600)
    assert _status_of(secured, other_audience) == 401
    forged, _ = TokenIssuer(ec.generate_private_key(ec.SECP256R1())).issue(NS, "old", uid, [DEFAULT_ISSUER], 600)
    assert _status_of(secured, forged) == 401


def test_token_request_refusals(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        missing = _token(admin, "nobody")
        assert missing.status_code == 404 and missing.json()["message"] == 'serviceaccounts "nobody" not found'
        _account(admin, "short")
        short = _token(admin, "short", {"expirationSeconds": 599})
        assert short.status_code == 422
        assert "may not specify a duration less than 10 minutes" in short.json()["message"]
        _pod(admin, "other-sa-pod", "default")
        wrong = _token(admin, "short", {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other-sa-pod"}})
        assert wrong.status_code == 400, wrong.text
        own = _pod(admin, "short-pod", "short")
        stale = _token(admin, "short", {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "short-pod",
                                                           "uid": "not-" + own["metadata"]["uid"]}})
        assert stale.status_code == 409, stale.text


def test_token_review_answers_for_audiences(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        _account(admin, "reviewed")
        token = _token(admin, "reviewed", {"audiences": ["vault"]}).json()["status"]["token"]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": ["vault"]}}
        r = admin.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review)
        assert r.status_code == 201, r.text
        status = r.json()["status"]
        assert status["authenticated"] is True and status["audiences"] == ["vault"]
        assert status["user"]["username"] == "system:serviceaccount:default:reviewed"
        assert "system:authenticated" in status["user"]["groups"]
        review["spec"]["audiences"] = []          # the apiserver's audience: not this token's
        status = admin.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review).json()["status"]
        assert status["authenticated"] is False and status["error"]


def test_admission_mounts_the_token_volume_and_refuses_unknown_accounts(secured):
    with _client(secured, ADMIN_TOKEN) as admin:
        pod = _create(admin, f"/api/v1/namespaces/{NS}/pods", {"metadata": {"name": "mounted"}, "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}})
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "default"
        volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
        sources = volume["projected"]["sources"]
        assert sources[0]["serviceAccountToken"] == {"expirationSeconds": 3607, "path": "token"}
        assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
        assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
        for container in spec["initContainers"] + spec["containers"]:
            assert {"name": volume["name"], "readOnly": True, "mountPath": MOUNT} in container["volumeMounts"]

        refused = admin.post(f"/api/v1/namespaces/{NS}/pods", json={"metadata": {"name": "ghost"}, "spec": {
            "serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox"}]}})
        assert refused.status_code == 403
        assert refused.json()["message"] == ('pods "ghost" is forbidden: error looking up service account '
                                             'default/ghost: serviceaccount "ghost" not found')

        _create(admin, f"/api/v1/namespaces/{NS}/serviceaccounts",
                {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
        wait_for(lambda: _pod_volumes(admin, "quiet", "q-probe") is not None, 10)
        assert _pod_volumes(admin, "quiet", "q") == []
        mirror = _create(admin, f"/api/v1/namespaces/{NS}/pods", {"metadata": {
            "name": "mirror", "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})
        assert not mirror["spec"].get("volumes")


def _pod_volumes(admin, account: str, name: str):
    """The volumes of a new pod of ``account`` (None while the account is not yet known)."""
    r = admin.post(f"/api/v1/namespaces/{NS}/pods", json={"metadata": {"name": name}, "spec": {
        "serviceAccountName": account, "containers": [{"name": "c", "image": "busybox"}]}})
    if r.status_code == 403:
        return None
    assert r.status_code == 201, r.text
    return r.json()["spec"].get("volumes") or []


def _kubectl_binaries() -> list[str]:
    found = [shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")]
    return list(dict.fromkeys(b for b in found if b and Path(b).exists()))


@pytest.mark.parametrize("binary", _kubectl_binaries())
def test_kubectl_create_token_gives_a_bound_token(secured, tmp_path, binary):
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": secured.url}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": NS}}]}))
    with _client(secured, ADMIN_TOKEN) as admin:
        _account(admin, "cli")
        pod = _pod(admin, "cli-pod", "cli")
    made = subprocess.run([binary, "--kubeconfig", str(config), "create", "token", "cli", "--duration", "20m",
                           "--bound-object-kind", "Pod", "--bound-object-name", "cli-pod"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    me = _whoami(secured, token).json()["status"]["userInfo"]
    assert me["username"] == "system:serviceaccount:default:cli"
    assert me["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1200


def test_the_official_client_requests_and_reviews_a_token(secured):
    import kubernetes

    configuration = kubernetes.client.Configuration()
    configuration.host = secured.url
    with kubernetes.client.ApiClient(configuration) as api:
        with _client(secured, ADMIN_TOKEN) as admin:
            _account(admin, "official")
        core = kubernetes.client.CoreV1Api(api)
        answer = core.create_namespaced_service_account_token("official", NS, kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=["vault"], expiration_seconds=600)))
        assert answer.status.expiration_timestamp is not None
        review = kubernetes.client.AuthenticationV1Api(api).create_token_review(kubernetes.client.V1TokenReview(
            spec=kubernetes.client.V1TokenReviewSpec(token=answer.status.token, audiences=["vault"])))
        assert review.status.authenticated is True
        assert review.status.user.username == "system:serviceaccount:default:official"
