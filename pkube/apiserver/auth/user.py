"""The authenticated caller of a request, as Kubernetes' ``user.Info`` describes it."""

from __future__ import annotations

from dataclasses import dataclass, field

ANONYMOUS_NAME = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
AUTHENTICATED_GROUP = "system:authenticated"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    """One caller: ``name`` (``kubernetes-admin``, ``system:node:n1``,
    ``system:serviceaccount:ns:sa``), an optional ``uid``, its ``groups`` (authenticated
    users also carry ``system:authenticated``) and ``extra`` (string lists, such as the
    bound pod of a ServiceAccount token)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS_NAME

    @property
    def node_name(self) -> str:
        """The node this user is (``system:node:<name>`` in ``system:nodes``), else ""."""
        if self.name.startswith(NODE_USER_PREFIX) and NODES_GROUP in self.groups:
            return self.name[len(NODE_USER_PREFIX):]
        return ""

    def as_user_info(self) -> dict:
        """The ``UserInfo`` JSON of authentication.k8s.io (TokenReview, SelfSubjectReview)."""
        doc: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            doc["uid"] = self.uid
        if self.extra:
            doc["extra"] = {k: list(v) for k, v in self.extra.items()}
        return doc


ANONYMOUS = UserInfo(ANONYMOUS_NAME, groups=(UNAUTHENTICATED_GROUP,))
