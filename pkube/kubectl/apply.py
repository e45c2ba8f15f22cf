"""``pkubectl apply`` and ``create -f``: declarative updates with the last-applied annotation.

apply keeps the file's content in ``kubectl.kubernetes.io/last-applied-configuration``
and sends a three-way patch (last applied, file, live object): fields set in
the file win, fields removed from the file since the last apply are removed
from the object, fields only the cluster set (status, defaults, other
writers) are left alone. Built-in kinds get a strategic merge patch (merge
keys: containers by name, ports by port...); kinds without a schema a JSON
merge patch, as kubectl does for custom resources.
"""

from __future__ import annotations

import copy
import json
from typing import Callable, Optional

from pkube.kubectl.errors import CliError
from pkube.kubectl.manifests import Manifest
from pkube.kubectl.session import ApiResource, Session

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DRY_RUN_CHOICES = ("none", "client", "server")


def last_applied_text(obj: dict) -> str:
    """The annotation's value for ``obj``, byte for byte as kubectl writes it: compact JSON with
    sorted keys, ``metadata.annotations`` present (``{}`` when empty) without itself, and a newline."""
    clean = copy.deepcopy(obj)
    meta = clean.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    meta["annotations"] = annotations
    return json.dumps(clean, sort_keys=True, separators=(",", ":")) + "\n"


def with_last_applied(obj: dict) -> dict:
    """A copy of ``obj`` carrying its own last-applied annotation."""
    text = last_applied_text(obj)
    modified = copy.deepcopy(obj)
    modified.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = text
    return modified


def original_of(current: dict) -> Optional[dict]:
    """The last-applied configuration stored on the live object, or None."""
    text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def three_way_json_merge_patch(original: Optional[dict], modified: dict, current: dict) -> dict:
    """kubectl's CreateThreeWayJSONMergePatch: changes from current to modified, plus
    deletions of what original had and modified dropped. Lists are replaced whole."""
    patch = _json_delta(current, modified)
    if original is not None:
        _merge_into(patch, _json_deletions(original, modified))
    return patch


def _json_delta(current: dict, modified: dict) -> dict:
    out = {}
    for key, value in modified.items():
        old = current.get(key) if isinstance(current, dict) else None
        if isinstance(value, dict) and isinstance(old, dict):
            inner = _json_delta(old, value)
            if inner:
                out[key] = inner
        elif value != old or (isinstance(current, dict) and key not in current):
            out[key] = copy.deepcopy(value)
    return out


def _json_deletions(original: dict, modified: dict) -> dict:
    out = {}
    for key, value in original.items():
        if key not in modified:
            out[key] = None
        elif isinstance(value, dict) and isinstance(modified[key], dict):
            inner = _json_deletions(value, modified[key])
            if inner:
                out[key] = inner
    return out


def _merge_into(target: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        elif key not in target:
            target[key] = value


def apply_patch(original: Optional[dict], modified: dict, current: dict) -> tuple[dict, str]:
    """(patch, patch type) for one apply: strategic for built-in kinds, merge otherwise."""
    from pkube.api.strategic import PatchError, three_way_merge_patch

    try:
        return three_way_merge_patch(original, modified, current, modified.get("kind", "")), "strategic"
    except (PatchError, KeyError, LookupError):
        return three_way_json_merge_patch(original, modified, current), "merge"


def _object_path(res: ApiResource, namespace: Optional[str], name: Optional[str] = None) -> str:
    from pkube.client.resources import resource_path

    return resource_path(res, namespace, name)


def _dry_run_params(dry_run: str) -> dict:
    return {"dryRun": "All"} if dry_run == "server" else {}


def _suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


MISSING_ANNOTATION_WARNING = (
    "Warning: resource {plural}/{name} is missing the kubectl.kubernetes.io/last-applied-configuration "
    "annotation which is required by pkubectl apply. pkubectl apply should only be used on resources created "
    "declaratively by either pkubectl create --save-config or pkubectl apply. The missing annotation will be "
    "patched automatically.")


def apply_manifest(session: Session, manifest: Manifest, dry_run: str = "none",
                   field_validation: Optional[str] = "Strict",
                   warn: Optional[Callable[[str], None]] = None) -> str:
    """Create or patch one object; returns kubectl's line (``deployment.apps/web configured``).

    ``warn`` receives kubectl's warning when the live object was not created by apply.
    """
    from pkube.client.errors import NotFound

    obj = manifest.obj
    res, namespace, name = _apply_target(session, manifest)
    if namespace:
        obj = dict(obj, metadata=dict(obj.get("metadata") or {}, namespace=namespace))
    modified = with_last_applied(obj)
    label = f"{res.qualified}/{name}"
    try:
        current = session.get_json(_object_path(res, namespace, name))
    except NotFound:
        if dry_run != "client":
            _send(session, "POST", _object_path(res, namespace), modified, dry_run, field_validation)
        return f"{label} created{_suffix(dry_run)}"
    original = original_of(current)
    if original is None and warn is not None:
        warn(MISSING_ANNOTATION_WARNING.format(plural=res.plural, name=name))
    patch, patch_type = apply_patch(original, modified, current)
    if not patch:
        return f"{label} unchanged{_suffix(dry_run)}"
    if dry_run != "client":
        _send(session, "PATCH", _object_path(res, namespace, name), patch, dry_run, field_validation,
              patch_type)
    return f"{label} configured{_suffix(dry_run)}"


PATCH_TYPES = {"strategic": "application/strategic-merge-patch+json",
               "merge": "application/merge-patch+json", "json": "application/json-patch+json"}


def _send(session: Session, method: str, path: str, body, dry_run: str, field_validation: Optional[str],
          patch_type: str = "") -> dict:
    params = _dry_run_params(dry_run)
    if field_validation:
        params["fieldValidation"] = field_validation
    content_type = PATCH_TYPES[patch_type] if method == "PATCH" else "application/json"
    response = session.request(method, path, params=params, body=json.dumps(body).encode(),
                               content_type=content_type)
    return response.json()


def create_manifest(session: Session, manifest: Manifest, dry_run: str = "none",
                    save_config: bool = False) -> str:
    """POST one object; returns ``pod/web created``."""
    obj = with_last_applied(manifest.obj) if save_config else manifest.obj
    res = session.for_object(obj)
    namespace = session.object_namespace(res, obj)
    created = obj
    if dry_run != "client":
        created = _send(session, "POST", _object_path(res, namespace), obj, dry_run, "Strict")
    name = (created.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName", "")
    return f"{res.qualified}/{name} created{_suffix(dry_run)}"


APPLY_PATCH_TYPE = "application/apply-patch+yaml"


def _apply_target(session: Session, manifest: Manifest) -> tuple[ApiResource, Optional[str], str]:
    """The resource, namespace and name ``manifest`` applies to; CliError when it has no name
    (apply, unlike create, needs one)."""
    obj = manifest.obj
    res = session.for_object(obj)
    namespace = session.object_namespace(res, obj)
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise CliError(f"{manifest.where}: metadata.name: Required value: name is required for apply")
    return res, namespace, name


def server_side_apply(session: Session, manifest: Manifest, field_manager: str = "kubectl",
                      force_conflicts: bool = False, dry_run: str = "none") -> str:
    """``apply --server-side``: send the file as an apply patch; the server merges by field ownership.

    A server without server-side apply answers 415; that becomes one CliError line.
    """
    from pkube.client.errors import ApiError

    obj = manifest.obj
    res, namespace, name = _apply_target(session, manifest)
    params = {"fieldManager": field_manager, **_dry_run_params(dry_run)}
    if force_conflicts:
        params["force"] = "true"
    try:
        session.request("PATCH", _object_path(res, namespace, name), params=params,
                        body=json.dumps(obj).encode(), content_type=APPLY_PATCH_TYPE)
    except ApiError as err:
        if err.code == 415:
            raise CliError("the server does not support server-side apply (415 Unsupported Media Type); "
                           "use client-side apply (without --server-side)") from None
        raise
    return f"{res.qualified}/{name} serverside-applied{_suffix(dry_run)}"


PRUNE_KINDS = ("ConfigMap", "Endpoints", "Pod", "Secret", "Service", "Deployment", "ReplicaSet")


def prunable(res: ApiResource, allowlist: Optional[list[str]]) -> bool:
    """Whether ``res`` may be pruned: in ``--prune-allowlist`` (``core/v1/ConfigMap``,
    ``apps/v1/Deployment``) when given, else one of PRUNE_KINDS."""
    if not allowlist:
        return res.kind in PRUNE_KINDS
    return f"{res.group or 'core'}/{res.version}/{res.kind}" in allowlist


def prune_candidates(session: Session, applied: list[dict], selector: str,
                     allowlist: Optional[list[str]] = None) -> list[tuple[ApiResource, dict]]:
    """Objects ``apply --prune -l selector`` deletes: of the prunable kinds, in the namespaces
    applied to, matching ``selector``, created by apply (last-applied annotation), absent from the files."""
    from pkube.client.resources import resource_path

    keep = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
            for o in applied}
    namespaces = sorted({(o.get("metadata") or {}).get("namespace") or session.namespace for o in applied})
    found = []
    for res in (r for r in session.resources if prunable(r, allowlist) and r.namespaced):
        for namespace in namespaces:
            listed = session.get_json(resource_path(res, namespace), {"labelSelector": selector})
            for obj in listed.get("items") or []:
                meta = obj.get("metadata") or {}
                if original_of(obj) is not None and (res.kind, meta.get("namespace"), meta.get("name")) not in keep:
                    found.append((res, obj))
    return found


def prune(session: Session, applied: list[dict], selector: str, dry_run: str = "none",
          allowlist: Optional[list[str]] = None) -> list[str]:
    """Delete the prune candidates; returns kubectl's lines (``configmap/old pruned``)."""
    from pkube.client.resources import resource_path

    lines = []
    for res, obj in prune_candidates(session, applied, selector, allowlist):
        meta = obj.get("metadata") or {}
        if dry_run != "client":
            session.request("DELETE", resource_path(res, meta.get("namespace"), meta.get("name")),
                            params=_dry_run_params(dry_run))
        lines.append(f"{res.qualified}/{meta.get('name')} pruned{_suffix(dry_run)}")
    return lines
