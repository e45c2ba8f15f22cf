"""The review resources: create-only questions answered at once and never stored.

- authorization.k8s.io/v1 SelfSubjectAccessReview (``kubectl auth can-i``),
  SelfSubjectRulesReview (``kubectl auth can-i --list``), SubjectAccessReview (may user X
  do this; the kubelet asks it) and LocalSubjectAccessReview (the same, in one namespace);
- authentication.k8s.io/v1 SelfSubjectReview (``kubectl auth whoami``).

``Reviews.wrap(endpoint)`` puts them in front of the resource endpoint: a POST to one of
their paths is answered here, anything else goes on. Creating a review is itself
authorized by the guard like any create (system:basic-user lets every authenticated user
ask about themselves).
"""

from __future__ import annotations

from typing import Awaitable, Callable, Optional

from starlette.requests import Request
from starlette.responses import Response

from pkube.apiserver import errors
from pkube.apiserver.auth.attributes import Attributes, non_resource_attributes, resource_attributes
from pkube.apiserver.auth.authorizer import ALLOW, DENY
from pkube.apiserver.auth.rbac import RBACAuthorizer
from pkube.apiserver.auth.user import ANONYMOUS, UserInfo
from pkube.apiserver.encoding import JSON, decode_object, json_response, media_type, read_body

AUTHORIZATION = "/apis/authorization.k8s.io/v1/"
SELF_SUBJECT_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
AUTHORIZATION_VERSION = "authorization.k8s.io/v1"

Endpoint = Callable[[Request], Awaitable[Response]]


class Reviews:
    """Answers the reviews. ``authorizer`` is the apiserver's Union (None: no authorization,
    everything is allowed); ``rbac`` (optional) lists rules for SelfSubjectRulesReview."""

    def __init__(self, authorizer=None, rbac=None):
        self.authorizer = authorizer
        self.rbac = rbac if rbac is not None or authorizer is None else authorizer.mode(RBACAuthorizer)

    def wrap(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` with the review paths answered here."""
        async def serve(request: Request) -> Response:
            path = request.url.path
            if request.method == "POST" and (path.startswith(AUTHORIZATION) or path == SELF_SUBJECT_REVIEW):
                answer = self._answer_for(path)
                if answer is not None:
                    return await answer(request)
            return await endpoint(request)
        return serve

    def _answer_for(self, path: str) -> Optional[Endpoint]:
        rest = path[len(AUTHORIZATION):].split("/") if path.startswith(AUTHORIZATION) else []
        if path == SELF_SUBJECT_REVIEW:
            return self.self_subject_review
        if rest == ["selfsubjectaccessreviews"]:
            return self.self_subject_access_review
        if rest == ["selfsubjectrulesreviews"]:
            return self.self_subject_rules_review
        if rest == ["subjectaccessreviews"]:
            return self.subject_access_review
        if len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "localsubjectaccessreviews":
            return self.local_subject_access_review
        return None

    async def self_subject_review(self, request: Request) -> Response:
        review = await _review_body(request, "SelfSubjectReview")
        review["status"] = {"userInfo": _caller(request).as_user_info()}
        return json_response(review, 201)

    async def self_subject_access_review(self, request: Request) -> Response:
        review = await _review_body(request, "SelfSubjectAccessReview")
        review["status"] = self._status(_attributes(_caller(request), review.get("spec") or {}))
        return json_response(review, 201)

    async def subject_access_review(self, request: Request) -> Response:
        review = await _review_body(request, "SubjectAccessReview")
        review["status"] = self._status(_attributes(_subject(review.get("spec") or {}), review.get("spec") or {}))
        return json_response(review, 201)

    async def local_subject_access_review(self, request: Request) -> Response:
        review = await _review_body(request, "LocalSubjectAccessReview")
        spec = review.get("spec") or {}
        namespace = request.url.path[len(AUTHORIZATION):].split("/")[1]
        asked = (spec.get("resourceAttributes") or {}).get("namespace", "")
        if not spec.get("resourceAttributes") or asked not in ("", namespace):
            raise errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
        spec["resourceAttributes"]["namespace"] = namespace
        review.setdefault("metadata", {})["namespace"] = namespace
        review["status"] = self._status(_attributes(_subject(spec), spec))
        return json_response(review, 201)

    async def self_subject_rules_review(self, request: Request) -> Response:
        review = await _review_body(request, "SelfSubjectRulesReview")
        namespace = (review.get("spec") or {}).get("namespace", "")
        review["status"] = self.rules_status(_caller(request), namespace)
        return json_response(review, 201)

    def rules_status(self, user: UserInfo, namespace: str) -> dict:
        """SubjectRulesReviewStatus from RBAC; ``incomplete`` for nodes (the Node authorizer's
        graph rights are not listable) and without RBAC."""
        if self.rbac is None:
            return {"resourceRules": [], "nonResourceRules": [], "incomplete": True}
        resource_rules, url_rules = [], []
        for rule in self.rbac.rules_for(user, namespace):
            if rule.non_resource_urls:
                url_rules.append({"verbs": sorted(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)})
            else:
                doc = {"verbs": sorted(rule.verbs), "apiGroups": sorted(rule.api_groups),
                       "resources": list(rule.resources)}
                if rule.resource_names:
                    doc["resourceNames"] = sorted(rule.resource_names)
                resource_rules.append(doc)
        return {"resourceRules": resource_rules, "nonResourceRules": url_rules,
                "incomplete": bool(user.node_name)}

    def _status(self, attrs: Attributes) -> dict:
        if self.authorizer is None:
            return {"allowed": True, "reason": "no authorization is configured"}
        decision, reason = self.authorizer.decide(attrs)
        status: dict = {"allowed": decision == ALLOW}
        if decision == DENY:
            status["denied"] = True
        if reason:
            status["reason"] = reason
        return status


async def _review_body(request: Request, kind: str) -> dict:
    """The posted review (kind and apiVersion filled in), without a status; 400 when the body
    is not one."""
    content_type = media_type(request) or JSON
    review = decode_object(await read_body(request), content_type)
    if review.get("kind") not in (None, kind):
        raise errors.bad_request(f"expected a {kind}, got a {review.get('kind')}")
    group = "authentication.k8s.io" if kind == "SelfSubjectReview" else "authorization.k8s.io"
    review["kind"], review["apiVersion"] = kind, f"{group}/v1"
    review.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    review.pop("status", None)
    if kind not in ("SelfSubjectReview", "SelfSubjectRulesReview"):
        spec = review.get("spec") or {}
        if bool(spec.get("resourceAttributes")) == bool(spec.get("nonResourceAttributes")):
            raise errors.bad_request("exactly one of spec.nonResourceAttributes or spec.resourceAttributes "
                                     "must be specified")
    return review


def _caller(request: Request) -> UserInfo:
    return getattr(request.state, "user", None) or ANONYMOUS


def _subject(spec: dict) -> UserInfo:
    """The user a SubjectAccessReview asks about; 400 without a user or group."""
    if not spec.get("user") and not spec.get("groups"):
        raise errors.bad_request("spec.user or spec.groups must be specified")
    return UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()),
                    dict(spec.get("extra") or {}))


def _attributes(user: UserInfo, spec: dict) -> Attributes:
    """The Attributes of a review's resourceAttributes or nonResourceAttributes."""
    resource = spec.get("resourceAttributes")
    if resource:
        return resource_attributes(user, resource.get("verb", ""), resource.get("group", ""),
                                   resource.get("version", ""), resource.get("namespace", ""),
                                   resource.get("resource", ""), resource.get("subresource", ""),
                                   resource.get("name", ""))
    url = spec.get("nonResourceAttributes") or {}
    return non_resource_attributes(user, url.get("verb", ""), url.get("path", ""))
