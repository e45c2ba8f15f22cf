"""The kubelet's token manager: a TokenRequest bound to the pod, reused until 80 % of its life
(or 24 h), the old token kept while a refresh fails, and the token written into the projected
volume with the other sources."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from pkube.client.clock import FakeClock
from pkube.client.errors import ApiError, status_for
from pkube.kubelet.objectsource import PodObjects
from pkube.kubelet.tokens import TokenError, TokenManager
from pkube.kubelet.volumecontent import ContentError, content_payload

POD = {"metadata": {"name": "web", "namespace": "shop", "uid": "uid-1"},
       "spec": {"serviceAccountName": "robot", "containers": [{"name": "c"}]}}


class FakeApi:
    """Answers TokenRequests with numbered tokens valid for the requested seconds."""

    def __init__(self, clock: FakeClock):
        self.clock, self.requests, self.fail = clock, [], False

    async def create_subresource(self, resource, name, subresource, obj, namespace=None):
        if self.fail:
            raise ApiError(status_for(503, "ServiceUnavailable", "apiserver down"))
        request = (resource.plural, namespace, name, subresource, obj)
        self.requests.append(request)
        seconds = request[4]["spec"]["expirationSeconds"]
        expires = self.clock.wall() + dt.timedelta(seconds=seconds)
        return {"status": {"token": f"token-{len(self.requests)}",
                           "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def run(coro):
    return asyncio.run(coro)


def test_the_request_is_bound_to_the_pod_for_the_audience_and_expiration():
    clock = FakeClock()
    api = FakeApi(clock)
    token = run(TokenManager(api, clock).token(POD, {"audience": "vault", "expirationSeconds": 7200, "path": "t"}))
    assert token == "token-1"
    plural, namespace, name, subresource, body = api.requests[0]
    assert (plural, namespace, name, subresource) == ("serviceaccounts", "shop", "robot", "token")
    assert body["spec"] == {"expirationSeconds": 7200, "audiences": ["vault"],
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1"}}


def test_a_token_is_reused_until_80_percent_of_its_life_then_renewed():
    clock = FakeClock()
    api = FakeApi(clock)
    tokens = TokenManager(api, clock)
    source = {"expirationSeconds": 1000}
    assert run(tokens.token(POD, source)) == "token-1"
    clock.advance(799)
    assert run(tokens.token(POD, source)) == "token-1"
    clock.advance(1)
    assert run(tokens.token(POD, source)) == "token-2"


def test_long_tokens_are_renewed_after_a_day():
    clock = FakeClock()
    api = FakeApi(clock)
    tokens = TokenManager(api, clock)
    source = {"expirationSeconds": 7 * 24 * 3600}
    run(tokens.token(POD, source))
    clock.advance(24 * 3600)
    assert run(tokens.token(POD, source)) == "token-2"


def test_a_failed_refresh_keeps_the_valid_token_and_fails_once_it_expired():
    clock = FakeClock()
    api = FakeApi(clock)
    tokens = TokenManager(api, clock)
    source = {"expirationSeconds": 1000}
    run(tokens.token(POD, source))
    api.fail = True
    clock.advance(900)
    assert run(tokens.token(POD, source)) == "token-1"
    clock.advance(100)
    with pytest.raises(TokenError, match="failed to fetch token: apiserver down"):
        run(tokens.token(POD, source))


def test_forget_drops_a_pods_tokens():
    clock = FakeClock()
    api = FakeApi(clock)
    tokens = TokenManager(api, clock)
    run(tokens.token(POD, {}))
    tokens.forget("uid-1")
    assert run(tokens.token(POD, {})) == "token-2"


class NoObjects:
    async def get(self, kind, namespace, name):
        return {"data": {"ca.crt": "CA"}} if name == "kube-root-ca.crt" else None


def test_the_projected_volume_holds_token_ca_and_namespace():
    clock = FakeClock()
    volume = {"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    payload = run(content_payload(POD, volume, PodObjects(NoObjects(), "shop"), None,
                                  TokenManager(FakeApi(clock), clock)))
    assert {path: p.data for path, p in payload.items()} == {"token": b"token-1", "ca.crt": b"CA",
                                                             "namespace": b"shop"}
    failing = FakeApi(clock)
    failing.fail = True
    with pytest.raises(ContentError, match="failed to fetch token"):
        run(content_payload(POD, volume, PodObjects(NoObjects(), "shop"), None, TokenManager(failing, clock)))
