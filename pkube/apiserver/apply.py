"""Server-side apply and managedFields in the apiserver: the edge between HTTP, the generic
store and the pure field manager (pkube/api/managedfields.py).

``FieldManager`` is owned by the ResourceStore: ``on_create`` and ``on_update`` record the
writer of every create, update, patch and status write as an Update manager;
``apply_step`` makes the read-modify-write step of an apply patch. ``manager_of`` names the
writer as Kubernetes does: the ``fieldManager`` parameter, else the User-Agent up to its
first "/" (``kubectl-client-side-apply``, ``kube-controller-manager``, ``OpenAPI-Generator``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Callable, Optional

from pkube.api import managedfields as mf
from pkube.api.fieldpath import difference, union
from pkube.api.jsonvalue import deep_copy
from pkube.api.fieldtypes import FieldType, TypeCatalog
from pkube.api.kinds import ResourceInfo
from pkube.api.meta import now_rfc3339
from pkube.apiserver import errors
from pkube.apiserver.encoding import JSON, decode
from pkube.apiserver.paths import Target

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
STATUS = "status"
SCALE = "scale"
SCALE_VERSION = "autoscaling/v1"


@dataclass(frozen=True)
class ApplyRequest:
    """An apply patch: the configuration, the applier and whether it forces conflicts."""

    config: dict
    force: bool = False


def manager_of(query, user_agent: str) -> str:
    """The manager name of an Update: fieldManager, else the User-Agent's product name."""
    return query.get("fieldManager") or user_agent.split("/", 1)[0][:mf.MAX_MANAGER_LENGTH]


def check_options(query, kind: str, apply: bool) -> None:
    """422 for a fieldManager that is missing (apply), too long or not printable, and for
    ``force`` on a write that is not an apply, with Kubernetes' messages; ``kind`` is the
    options kind named (PatchOptions, CreateOptions, UpdateOptions)."""
    manager = query.get("fieldManager") or ""
    causes = []
    if apply and not manager:
        causes.append(("FieldValueRequired", "fieldManager", "Required value: is required for apply patch"))
    if not apply and query.get("force") is not None:
        causes.append(("FieldValueForbidden", "force", "Forbidden: may not be specified for non-apply patch"))
    if len(manager) > mf.MAX_MANAGER_LENGTH:
        causes.append(("FieldValueTooLong", "fieldManager",
                       f"Too long: may not be more than {mf.MAX_MANAGER_LENGTH} bytes"))
    elif manager and not manager.isprintable():
        causes.append(("FieldValueInvalid", "fieldManager",
                       f"Invalid value: {json.dumps(manager)}: must only contain printable characters"))
    if causes:
        message = "; ".join(f"{field}: {text}" for _, field, text in causes)
        message = message if len(causes) == 1 else f"[{message}]"
        raise errors.ApiError(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {message}',
                              {"group": "meta.k8s.io", "kind": kind,
                               "causes": [{"reason": r, "message": t, "field": f} for r, f, t in causes]})


def parse_force(query) -> bool:
    value = query.get("force")
    if value not in (None, "", "true", "false"):
        raise errors.bad_request(f'force: Invalid value: "{value}": must be true or false')
    return value == "true"


@contextlib.contextmanager
def _never_failing(obj: dict):
    """A write never fails for its managedFields: on a bug they are dropped and logged, as
    Kubernetes' UpdateNoErrors does."""
    try:
        yield
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        log.exception("failed to update managedFields of %s", (obj.get("metadata") or {}).get("name"))
        (obj.get("metadata") or {}).pop("managedFields", None)


class FieldManager:
    """managedFields on every write of the store, and the apply merge."""

    def __init__(self, catalog: Optional[TypeCatalog] = None, clock: Callable[[], str] = now_rfc3339):
        self.catalog = catalog or TypeCatalog()
        self.clock = clock

    def type_of(self, info: ResourceInfo) -> FieldType:
        if info.custom is not None:
            schema = info.custom.schema
            return self.catalog.custom(schema.schema if schema is not None else None)
        return self.catalog.builtin(info.api_version, info.kind)

    def _operation(self, info: ResourceInfo, manager: str, subresource: str) -> mf.Operation:
        return mf.Operation(manager, info.api_version, subresource, self.clock())

    def on_create(self, info: ResourceInfo, obj: dict, manager: str) -> None:
        """Record the creator of ``obj`` (in place), after defaulting, as Kubernetes does."""
        if mf.is_reset(obj):
            obj["metadata"].pop("managedFields", None)
            return
        with _never_failing(obj):
            node = self.type_of(info)
            entries = mf.decode(obj) or []
            mf.store(obj, mf.create(obj, entries, self._operation(info, manager, ""), node, info.custom is not None))

    def on_update(self, info: ResourceInfo, current: dict, new: dict, manager: str, subresource: str) -> None:
        """Record the writer of ``new`` (in place). Its own managedFields are kept as the base
        when a main-resource write sends some; an object nobody tracked stays untracked."""
        if mf.is_reset(new) and not subresource:
            new["metadata"].pop("managedFields", None)
            return
        entries = None if subresource else mf.decode(new)
        if not entries:
            entries = mf.decode(current) or []
        if not entries:
            new["metadata"].pop("managedFields", None)
            return
        with _never_failing(new):
            node = self.type_of(info)
            mf.store(new, mf.update(current, new, entries, self._operation(info, manager, subresource), node))

    def apply_step(self, info: ResourceInfo, request: ApplyRequest, manager: str,
                   subresource: str) -> Callable[[dict], dict]:
        """current -> the applied object with its managedFields (409 on a conflict, 400 on a
        configuration that is not for this kind)."""
        config = self._config(info, request.config, subresource)
        node = self.type_of(info)

        def step(current: dict) -> dict:
            entries = mf.decode(current) or []
            op = self._operation(info, manager, subresource)
            try:
                new, entries = self._apply(current, config, entries, op, node, request.force)
            except mf.ApplyConflict as conflict:
                raise errors.ApiError(409, "Conflict", conflict.message(), {"causes": conflict.causes()}) from None
            new = deep_copy(new)       # the store defaults it in place; it shares with current
            new.setdefault("metadata", {})
            if manager == mf.KUBECTL:
                mf.sync_last_applied(new, request.config)
            return mf.store(new, entries)
        return step

    def apply_scale(self, parent: dict, scale: dict, request: ApplyRequest, manager: str,
                    replicas: tuple, api_version: str) -> tuple[dict, list]:
        """Apply ``request`` to ``scale`` (the autoscaling/v1 view of ``parent``, whose replica
        count is at ``replicas``) as Kubernetes applies through /scale; returns the applied Scale
        and the parent's new managedFields entries. 409 on a conflict, 400 on a config that
        is not an autoscaling/v1 Scale."""
        config = request.config
        if config.get("apiVersion") != SCALE_VERSION or config.get("kind") != "Scale":
            raise errors.bad_request(f"Incorrect version specified in apply patch. Specified patch version: "
                                     f"{config.get('apiVersion')}, expected: {SCALE_VERSION}"
                                     if config.get("apiVersion") != SCALE_VERSION else
                                     f"Incorrect kind specified in apply patch. Specified patch kind: "
                                     f"{config.get('kind')}, expected: Scale")
        entries = mf.decode(parent) or []
        op = mf.Operation(manager, SCALE_VERSION, SCALE, self.clock())
        try:
            applied, scale_entries = mf.apply(scale, config, to_scale_entries(entries, replicas), op,
                                              self.catalog.builtin(SCALE_VERSION, "Scale"), request.force)
        except mf.ApplyConflict as conflict:
            raise errors.ApiError(409, "Conflict", conflict.message(), {"causes": conflict.causes()}) from None
        return applied, from_scale_entries(entries, scale_entries, replicas, api_version)

    @staticmethod
    def _apply(live: dict, config: dict, entries: list, op: mf.Operation, node: FieldType, force: bool):
        try:
            return mf.apply(live, config, entries, op, node, force)
        except mf.ApplyConflict as conflict:
            if op.manager != mf.KUBECTL:
                raise
            remaining = mf.upgrade_conflicts(live, conflict, node)
            if remaining:
                raise mf.ApplyConflict(remaining) from None
            return mf.apply(live, config, entries, op, node, True)

    @staticmethod
    def _config(info: ResourceInfo, config: dict, subresource: str) -> dict:
        """The part of a configuration this endpoint applies: status only through /status,
        everything but status otherwise when the resource has a status subresource
        (Kubernetes' reset fields)."""
        if not isinstance(config, dict):
            raise errors.bad_request("the apply patch must be an object")
        version, kind = config.get("apiVersion"), config.get("kind")
        if version != info.api_version:
            raise errors.bad_request(f"Incorrect version specified in apply patch. Specified patch version: "
                                     f"{version}, expected: {info.api_version}")
        if kind != info.kind:
            raise errors.bad_request(f"Incorrect kind specified in apply patch. Specified patch kind: {kind}, "
                                     f"expected: {info.kind}")
        md = config.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        if md and md.get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        if subresource == STATUS:
            identity = {k: md[k] for k in ("name", "namespace") if k in (md or {})}
            return {**{k: v for k, v in config.items() if k in ("apiVersion", "kind", "status")},
                    "metadata": identity}
        if STATUS not in info.subresources:
            return config
        return {k: v for k, v in config.items() if k != "status"}


def field_path(json_path: str) -> tuple:
    """".spec.replicas" -> ("f:spec", "f:replicas") (a CRD's simple JSON path)."""
    return tuple("f:" + step for step in json_path.split(".") if step)


def path_set(path: tuple) -> dict:
    """The FieldsV1 set holding just ``path``."""
    tree: dict = {}
    for element in reversed(path):
        tree = {element: tree}
    return tree


SCALE_REPLICAS = field_path(".spec.replicas")


def to_scale_entries(entries: list, replicas: tuple) -> list:
    """The parent's managedFields as the Scale sees them (Kubernetes' ScaleHandler.ToSubresource):
    each owner of the parent's ``replicas`` path owns the Scale's spec.replicas, at autoscaling/v1."""
    return [mf.Entry(e.manager, e.operation, SCALE_VERSION, path_set(SCALE_REPLICAS), e.time, e.subresource)
            for e in entries if mf.has(e.fields, replicas)]


def from_scale_entries(parent: list, scale: list, replicas: tuple, api_version: str) -> list:
    """The parent's managedFields after a write through its Scale (ScaleHandler.FromSubresource):
    nobody keeps the parent's ``replicas`` path but the Scale's owners of spec.replicas, whose
    entries (``api_version``, their subresource) gain it; emptied entries go."""
    owned = path_set(replicas)
    out = {}
    for entry in parent:
        fields = difference(entry.fields, owned) if mf.has(entry.fields, replicas) else entry.fields
        if fields:
            out[entry.key] = replace(entry, fields=fields)
    for entry in scale:
        if not mf.has(entry.fields, SCALE_REPLICAS):
            continue
        moved = mf.Entry(entry.manager, entry.operation, api_version, owned, entry.time, entry.subresource)
        kept = out.get(moved.key)
        out[moved.key] = moved if kept is None else replace(kept, fields=union(kept.fields, owned), time=entry.time)
    return list(out.values())


def decode_config(raw: bytes) -> dict:
    """An apply patch body: JSON (what kubectl and the clients send) or YAML; 400 otherwise."""
    try:
        config = decode(raw, JSON)
    except errors.ApiError:
        config = decode(raw, "application/yaml")
    if not isinstance(config, dict):
        raise errors.bad_request("the apply patch must be an object")
    return config


def object_missing(error: errors.ApiError, target: Target) -> bool:
    """True when ``error`` says the object an apply targets does not exist (so it creates it)."""
    details = error.details or {}
    return error.code == 404 and details.get("name") == target.name and details.get("kind") == target.info.plural
