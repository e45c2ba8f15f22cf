"""ServiceAccount tokens in the apiserver: ``serviceaccounts/NAME/token`` (TokenRequest) and
``tokenreviews`` (TokenReview), both authentication.k8s.io/v1, created and answered at once,
never stored.

``ServiceAccountTokens`` is what the --service-account-* flags turn on, in one object
handed to ``create_app(service_accounts=...)``: the issuer (None without a signing key: then
TokenRequest answers 405 as before), the authenticator to append to the token chain, the
ServiceAccount admission plugin, and the cache both read (started and stopped with the app).
``wrap(endpoint)`` answers the two paths in front of the resource endpoint; authentication,
audit and authorization have run before (a TokenRequest is authorized as ``create`` on
``serviceaccounts/token``).
"""

from __future__ import annotations

import datetime
import re
from typing import Awaitable, Callable, Optional, Sequence

from starlette.requests import Request
from starlette.responses import Response

from pkube.apiserver import errors
from pkube.apiserver.auth.serviceaccounts import (
    DEFAULT_ISSUER, BoundObject, KeyFileError, ServiceAccountAuthenticator, ServiceAccountCache, TokenIssuer,
    load_private_key, load_public_keys,
)
from pkube.apiserver.auth.serviceaccounts_admission import ServiceAccountAdmission
from pkube.apiserver.auth.user import AUTHENTICATED_GROUP
from pkube.apiserver.encoding import JSON, decode_object, json_response, media_type, read_body
from pkube.apiserver.storage.interface import NotFound

GROUP_VERSION = "authentication.k8s.io/v1"
TOKEN_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)/token$")
TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
BINDABLE = {"Pod": "/registry/pods/{namespace}/{name}", "Secret": "/registry/secrets/{namespace}/{name}"}
ACCOUNT_KEY = "/registry/serviceaccounts/{namespace}/{name}"
NODE_KEY = "/registry/nodes/{name}"

Endpoint = Callable[[Request], Awaitable[Response]]


class ServiceAccountTokens:
    """``issuer`` signs (None: TokenRequest is not served); ``keys`` verify; ``audiences``
    are the apiserver's (default: the issuer's name)."""

    def __init__(self, storage, issuer: Optional[TokenIssuer], keys: Sequence, issuer_name: str,
                 audiences: Sequence[str] = (), node_key: str = NODE_KEY):
        self.storage, self.issuer, self.node_key = storage, issuer, node_key
        self.cache = ServiceAccountCache(storage)
        self.authenticator = ServiceAccountAuthenticator(keys, issuer_name, audiences, self.cache)
        self.admission = ServiceAccountAdmission(self.cache)
        self.token_authenticators: Sequence = (self.authenticator,)   # TokenReview asks these

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()

    def wrap(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` with TokenRequest and TokenReview answered here."""
        async def serve(request: Request) -> Response:
            if request.method == "POST":
                path = request.url.path
                match = TOKEN_PATH.match(path)
                if match is not None and self.issuer is not None:
                    body = await _body(request, "TokenRequest")
                    return json_response(await self.token_request(match.group(1), match.group(2), body), 201)
                if path == TOKEN_REVIEW_PATH:
                    return json_response(await self.token_review(await _body(request, "TokenReview")), 201)
            return await endpoint(request)
        return serve

    # ----- TokenRequest

    async def token_request(self, namespace: str, name: str, request: dict) -> dict:
        """The TokenRequest with ``status.token`` and ``status.expirationTimestamp``; 404 for a
        missing ServiceAccount or bound object, 409 for a bound object of another uid, 422 for
        a bad spec."""
        spec = request.setdefault("spec", {})
        seconds = spec.setdefault("expirationSeconds", DEFAULT_EXPIRATION)
        _check_expiration(name, seconds)
        audiences = spec.get("audiences") or list(self.authenticator.audiences)
        spec["audiences"] = audiences
        account = await self._get(ACCOUNT_KEY, "serviceaccounts", namespace, name)
        bound = await self._bound(namespace, name, spec.get("boundObjectRef"))
        token, expires = self.issuer.issue(namespace, name, account["metadata"].get("uid", ""), audiences,
                                           seconds, bound)
        request["metadata"] = {**(request.get("metadata") or {}), "name": name, "namespace": namespace,
                               "creationTimestamp": None}
        request["status"] = {"token": token, "expirationTimestamp": _rfc3339(expires)}
        return request

    async def _get(self, key: str, plural: str, namespace: str, name: str) -> dict:
        try:
            return await self.storage.get(key.format(namespace=namespace, name=name))
        except NotFound:
            raise errors.ApiError(404, "NotFound", f'{plural} "{name}" not found',
                                  {"name": name, "kind": plural}) from None

    async def _bound(self, namespace: str, account: str, ref: Optional[dict]) -> Optional[BoundObject]:
        """The object a token is bound to (None: unbound); the ref's uid must be the live one."""
        if not ref:
            return None
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind not in BINDABLE or ref.get("apiVersion", "v1") != "v1":
            raise errors.bad_request(f"cannot bind token for serviceaccount \"{account}\" to object of type "
                                     f"{ref.get('apiVersion', '')}, Kind={kind}")
        obj = await self._get(BINDABLE[kind], kind.lower() + "s", namespace, name)
        uid = obj["metadata"].get("uid", "")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.lower()}s "{name}": '
                                  f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                                  "in record. The object might have been deleted and then recreated",
                                  {"name": name, "kind": kind.lower() + "s"})
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName", "default") != account:
            raise errors.bad_request(f'cannot bind token for serviceaccount "{account}" to pod running with '
                                     "different serviceaccount name.")
        node_name = (obj.get("spec") or {}).get("nodeName", "") if kind == "Pod" else ""
        return BoundObject(kind, name, uid, node_name, await self._node_uid(node_name))

    async def _node_uid(self, node: str) -> str:
        if not node:
            return ""
        try:
            return (await self.storage.get(self.node_key.format(name=node)))["metadata"].get("uid", "")
        except NotFound:
            return ""

    # ----- TokenReview

    async def token_review(self, review: dict) -> dict:
        """The TokenReview with its status: the user when a token authenticator accepts the
        token, ``authenticated: false`` and an error otherwise."""
        spec = review.get("spec") or {}
        token, wanted = spec.get("token", ""), spec.get("audiences") or []
        status: dict = {"authenticated": False, "user": {}}
        try:
            user, audiences = await self._review_user(token, wanted)
        except errors.ApiError:
            status["error"] = "invalid bearer token" if token else "token is empty"
        else:
            info = user.as_user_info()
            if AUTHENTICATED_GROUP not in info["groups"]:
                info["groups"].append(AUTHENTICATED_GROUP)     # as the request chain adds it
            status.update(authenticated=True, user=info, audiences=audiences)
        review["status"] = status
        return review

    async def _review_user(self, token: str, wanted: list):
        """(user, the audiences the token is good for) from the token chain; 401 when no
        authenticator accepts the token."""
        if not token:
            raise errors.unauthorized("token is empty")
        if self.authenticator.is_ours(token):
            claims = self.authenticator.verified_claims(token, wanted)
            audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
            return self.authenticator.user_of(claims), [a for a in (wanted or self.authenticator.audiences)
                                                        if a in audiences]
        for authenticator in self.token_authenticators:
            if authenticator is self.authenticator:
                continue
            user = await authenticator.authenticate_token(token)
            if user is not None:
                return user, list(wanted or self.authenticator.audiences)
        raise errors.unauthorized()


def _check_expiration(name: str, seconds) -> None:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < MIN_EXPIRATION or seconds > MAX_EXPIRATION:
        why = ("may not specify a duration less than 10 minutes" if isinstance(seconds, int) and seconds < MIN_EXPIRATION
               else "may not specify a duration larger than 2^32 seconds")
        raise errors.ApiError(422, "Invalid", f'TokenRequest.authentication.k8s.io "{name}" is invalid: '
                              f"spec.expirationSeconds: Invalid value: {seconds}: {why}",
                              {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
                               "causes": [{"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                                           "message": f"Invalid value: {seconds}: {why}"}]})


def _rfc3339(unix: int) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _body(request: Request, kind: str) -> dict:
    """The posted object (kind and apiVersion filled in, no status); 400 when it is another kind."""
    obj = decode_object(await read_body(request), media_type(request) or JSON)
    if obj.get("kind") not in (None, kind):
        raise errors.bad_request(f"expected a {kind}, got a {obj.get('kind')}")
    obj["kind"], obj["apiVersion"] = kind, GROUP_VERSION
    obj.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    obj.pop("status", None)
    return obj


def add_flags(parser) -> None:
    """kube-apiserver's ServiceAccount token flags."""
    parser.add_argument("--service-account-signing-key-file",
                        help="the private key (EC P-256 or RSA, PEM) ServiceAccount tokens are signed with")
    parser.add_argument("--service-account-key-file", action="append", default=[],
                        help="PEM keys (public or private, or certificates) tokens are verified with; repeatable "
                             "(default: the signing key's)")
    parser.add_argument("--service-account-issuer", default=DEFAULT_ISSUER, help="the tokens' iss")
    parser.add_argument("--api-audiences", default="",
                        help="comma-separated audiences a token must be meant for (default: the issuer)")


def from_flags(args, authenticator=None) -> Optional[Callable[[object], ServiceAccountTokens]]:
    """A function(storage) making the ServiceAccountTokens the flags ask for (None: no
    ServiceAccount tokens at all), appending its authenticator to ``authenticator``'s
    token chain (apiserver.auth.authn.RequestAuthenticator) when there is one. A key file that
    cannot be read ends the process with one line."""
    if not args.service_account_signing_key_file and not args.service_account_key_file:
        return None
    try:
        signing = load_private_key(args.service_account_signing_key_file) \
            if args.service_account_signing_key_file else None
        keys = [k for path in args.service_account_key_file for k in load_public_keys(path)] or [signing.public_key()]
        issuer = TokenIssuer(signing, args.service_account_issuer) if signing is not None else None
    except KeyFileError as err:
        raise SystemExit(f"apiserver: service account key: {err}") from None
    audiences = [a.strip() for a in args.api_audiences.split(",") if a.strip()]

    def make(storage) -> ServiceAccountTokens:
        tokens = ServiceAccountTokens(storage, issuer, keys, args.service_account_issuer, audiences)
        if authenticator is not None:
            authenticator.token_authenticators.append(tokens.authenticator)
        return tokens
    return make
