"""ControllerRevision history of DaemonSets and StatefulSets (Kubernetes' controller_history.go).

A revision is an apps/v1 ControllerRevision owned (controller reference) by
its set, named ``<set>-<hash>``, labelled with the set's template labels and
``controller-revision-hash: <hash>``, numbered by ``.revision`` (1, 2, ...),
and holding in ``.data`` the strategic merge patch that puts its template back:
``{"spec": {"template": {..., "$patch": "replace"}}}`` — exactly what the real
``kubectl rollout undo ds/x`` (and sts) sends, so undo needs nothing here.

The hash is the Deployment's pod-template-hash (``deployment_util``) of the
template and the set's ``status.collisionCount``. Pods carry the hash of the
revision they were made from in the same label.

``sync_revisions`` makes sure the current template has a revision with the
highest number (found, renumbered after a rollback, or created);
``truncate_history`` deletes the oldest revisions beyond revisionHistoryLimit
that no live pod and no status field uses.
"""

from __future__ import annotations

import copy
from typing import Iterable, Optional

from pkube.api.selectors import SelectorError, label_selector_from_dict
from pkube.client.errors import AlreadyExists, NotFound
from pkube.client.resources import CONTROLLERREVISIONS
from pkube.controllers import deployment_util as du
from pkube.controllers.base import PermanentError, TemporaryError
from pkube.controllers.podcontrol import claim, controller_ref, owner_reference

CONTROLLER_REVISIONS = CONTROLLERREVISIONS
HASH_LABEL = "controller-revision-hash"
PATCH_DIRECTIVE = "$patch"
CHANGE_CAUSE = "kubernetes.io/change-cause"
DEFAULT_HISTORY_LIMIT = 10


def template_of(obj: dict) -> dict:
    return (obj.get("spec") or {}).get("template") or {}


def revision_hash(owner: dict) -> str:
    """The hash of ``owner``'s current template (and its status.collisionCount)."""
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    return du.pod_template_hash(_without_hash_label(template_of(owner)), collisions)


def _without_hash_label(template: dict) -> dict:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return template


def revision_template(revision: dict) -> dict:
    """The pod template a revision holds (without the ``$patch`` directive)."""
    template = dict(template_of(revision.get("data") or {}))
    template.pop(PATCH_DIRECTIVE, None)
    return template


def revision_number(revision: dict) -> int:
    return int(revision.get("revision") or 0)


def same_template(revision: dict, owner: dict) -> bool:
    """Whether ``revision`` holds ``owner``'s current template."""
    return du.templates_equal(_without_hash_label(revision_template(revision)),
                              _without_hash_label(template_of(owner)))


def new_revision(owner: dict, number: int) -> dict:
    """The ControllerRevision of ``owner``'s current template, numbered ``number``."""
    template = _without_hash_label(template_of(owner))
    digest = revision_hash(owner)
    labels = dict((template.get("metadata") or {}).get("labels") or {}, **{HASH_LABEL: digest})
    meta = {"name": f"{owner['metadata']['name'][:223]}-{digest}",
            "namespace": owner["metadata"].get("namespace"), "labels": labels,
            "ownerReferences": [owner_reference(owner)]}
    cause = (owner["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
    if cause:
        meta["annotations"] = {CHANGE_CAUSE: cause}
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
            "data": {"spec": {"template": dict(template, **{PATCH_DIRECTIVE: "replace"})}},
            "revision": number}


def sorted_revisions(revisions: Iterable[dict]) -> list[dict]:
    """Oldest first (by number, then name)."""
    return sorted(revisions, key=lambda r: (revision_number(r), r["metadata"]["name"]))


def pod_revision(pod: dict) -> Optional[str]:
    """The hash label of the revision a pod was made from (None if unlabelled)."""
    return (pod["metadata"].get("labels") or {}).get(HASH_LABEL)


def label_hash(revision: dict) -> str:
    """The hash a revision's pods carry: its label, else the suffix of its name."""
    labels = revision["metadata"].get("labels") or {}
    return labels.get(HASH_LABEL) or revision["metadata"]["name"].rsplit("-", 1)[-1]


async def claim_revisions(client, owner: dict, candidates: list[dict]) -> list[dict]:
    """The revisions ``owner`` controls (adopting orphans its selector matches), oldest first."""
    try:
        selector = label_selector_from_dict(owner["spec"].get("selector"))
    except SelectorError as err:
        raise PermanentError(f"invalid selector: {err}") from None
    owned = await claim(client, CONTROLLER_REVISIONS, owner, candidates,
                        lambda r: selector.matches(r["metadata"].get("labels")))
    return sorted_revisions(owned)


async def sync_revisions(client, resource, owner: dict, revisions: list[dict]) -> tuple[dict, list[dict]]:
    """The revision of ``owner``'s current template, made the newest, and every owned revision
    (oldest first, the returned one included). ``revisions`` are the owned ones (claimed).

    A template equal to an older revision's (a rollback) renumbers that revision; a new
    template gets a new one. A name taken by another object bumps ``status.collisionCount``
    of ``owner`` (through ``resource``'s status subresource) and raises TemporaryError.
    """
    top = max((revision_number(r) for r in revisions), default=0)
    equal = [r for r in revisions if same_template(r, owner)]
    if equal:
        current = sorted_revisions(equal)[-1]
        if revision_number(current) < top:
            current = await _renumber(client, current, top + 1)
        return current, sorted_revisions([r for r in revisions if r is not current and
                                          r["metadata"]["uid"] != current["metadata"]["uid"]] + [current])
    current = await _create(client, resource, owner, new_revision(owner, top + 1))
    return current, sorted_revisions(revisions + [current])


async def _renumber(client, revision: dict, number: int) -> dict:
    meta = revision["metadata"]
    patch = {"revision": number, "metadata": {"resourceVersion": meta["resourceVersion"]}}
    return await client.patch(CONTROLLER_REVISIONS, meta["name"], patch, meta["namespace"])


async def _create(client, resource, owner: dict, revision: dict) -> dict:
    namespace = owner["metadata"]["namespace"]
    try:
        return await client.create(CONTROLLER_REVISIONS, revision, namespace)
    except AlreadyExists:
        pass
    existing = await client.get(CONTROLLER_REVISIONS, revision["metadata"]["name"], namespace)
    ref = controller_ref(existing) or {}
    if ref.get("uid") == owner["metadata"]["uid"] and same_template(existing, owner):
        return existing                      # ours; the cache had not seen it yet
    count = int((owner.get("status") or {}).get("collisionCount") or 0) + 1
    await client.patch(resource, owner["metadata"]["name"], {"status": {"collisionCount": count}},
                       namespace, subresource="status")
    raise TemporaryError(f"revision name {revision['metadata']['name']} taken; collisionCount {count}", 0.1)


async def truncate_history(client, owner: dict, revisions: list[dict], in_use: set[str]) -> list[dict]:
    """Delete the oldest revisions beyond spec.revisionHistoryLimit (default 10) whose hash is
    not in ``in_use`` (live pods' hashes, the current and update revisions'); the rest."""
    limit = owner["spec"].get("revisionHistoryLimit")
    limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
    idle = [r for r in sorted_revisions(revisions) if label_hash(r) not in in_use]
    doomed = idle[:max(0, len(idle) - limit)]
    for revision in doomed:
        try:
            await client.delete(CONTROLLER_REVISIONS, revision["metadata"]["name"],
                                revision["metadata"]["namespace"])
        except NotFound:
            pass
    gone = {r["metadata"]["uid"] for r in doomed}
    return [r for r in revisions if r["metadata"]["uid"] not in gone]
