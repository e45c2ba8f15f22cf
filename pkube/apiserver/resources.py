"""The generic resource store: create, get, update, patch and status writes.

Like Kubernetes' ``genericregistry.Store``: one class serves every kind,
driven by ``api.kinds.ResourceInfo`` and the per-kind rules of
``strategies``. Everything here speaks in objects and raises ``ApiError``;
HTTP lives in ``routes``. Store errors are translated in ``translate``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from pkube.api import meta
from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import ResourceInfo, is_crd
from pkube.apiserver import errors, strategies
from pkube.apiserver.admission import CREATE, UPDATE, Admission, AdmissionRequest
from pkube.apiserver.apply import ApplyRequest, FieldManager
from pkube.apiserver.auth.user import UserInfo
from pkube.apiserver.conversion import to_served, to_stored
from pkube.apiserver.paths import Target
from pkube.apiserver.pruning import drop_paths
from pkube.apiserver.services import NeedsAllocation, ServiceAllocations
from pkube.apiserver.storage.interface import Conflict, KeyExists, NotFound, SpaceExceeded, Storage, StorageUnavailable


FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
GENERATE_NAME_ATTEMPTS = 8
ALLOCATION_ATTEMPTS = 4


@dataclass(frozen=True)
class WriteOptions:
    """Query options of create/update/patch, and who asks (None: no authentication).
    ``field_manager`` names the writer in managedFields; ``apply`` is set for an apply patch."""

    dry_run: bool = False
    field_validation: str = "Warn"
    user: Optional[UserInfo] = None
    field_manager: str = "kube-apiserver"
    apply: Optional[ApplyRequest] = None


@dataclass
class WriteResult:
    """The object written (or that would be written) and warnings for the client."""

    object: dict
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def translate(info: ResourceInfo, name: str):
    """Turn store errors into the ApiError a client must see."""
    try:
        yield
    except NotFound:
        raise errors.not_found(info, name) from None
    except KeyExists:
        raise errors.already_exists(info, name) from None
    except Conflict as exc:
        why = str(exc) if str(exc).startswith("Precondition") else ""
        raise errors.conflict(info, name, why) from None
    except SpaceExceeded as exc:
        raise errors.storage_error(str(exc)) from None
    except StorageUnavailable as exc:
        raise errors.unavailable(f"the storage is unavailable: {exc}") from None


def check_kind(info: ResourceInfo, obj: dict) -> None:
    """400 when the body's apiVersion/kind are not the URL's; fill them when absent."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind is None and api_version is None:
        obj["kind"], obj["apiVersion"] = info.kind, info.api_version
        return
    if kind != info.kind or api_version != info.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) and kind ({kind}) do not match the "
            f"expected {info.api_version} {info.kind}")


GO_JSON_TYPES = ((bool, "bool"), (int, "number"), (float, "number"), (str, "string"), (list, "array"), (dict, "object"))


def undecodable(info: ResourceInfo, field: str, value, want: str) -> str:
    """kube-apiserver's message for a body whose ``field`` holds a JSON value Go cannot decode
    into its type: 'Role in version "v1" cannot be handled as a Role: json: cannot unmarshal
    number into Go struct field ObjectMeta.metadata.generateName of type string'."""
    got = next(name for kind, name in GO_JSON_TYPES if isinstance(value, kind))
    return (f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: json: cannot unmarshal '
            f"{got} into Go struct field {field} of type {want}")


def check_identity(target: Target, obj: dict) -> None:
    """400 when the body's name or namespace disagree with the URL; fills the namespace."""
    md = meta.metadata(obj)
    info = target.info
    if not isinstance(md.get("name", ""), str) or not isinstance(md.get("namespace", ""), str):
        raise errors.bad_request("metadata.name and metadata.namespace must be strings")
    if md.get("generateName") is not None and not isinstance(md["generateName"], str):
        raise errors.bad_request(undecodable(info, "ObjectMeta.metadata.generateName", md["generateName"], "string"))
    if target.name is not None and md.get("name") and md["name"] != target.name:
        raise errors.bad_request(f"the name of the object ({md['name']}) does not match the name "
                                 f"on the URL ({target.name})")
    if target.name is not None:
        md["name"] = target.name
    if info.namespaced:
        if target.namespace is None:
            raise errors.bad_request(f"{info.plural} are namespaced: use /namespaces/NAMESPACE/{info.plural}")
        if md.get("namespace") and md["namespace"] != target.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the "
                                     "namespace sent on the request")
        md["namespace"] = target.namespace
    else:
        md.pop("namespace", None)


def _is_unknown_field(cause: dict) -> bool:
    """True for the validator's fieldValidation cause (an unknown field), one pass serving
    Strict (error), Warn (warning) and Ignore (dropped)."""
    return str(cause.get("message", "")).startswith('unknown field "')


class ResourceStore:
    """Create/get/update/patch for every kind over one Storage.

    ``namespaces`` answers whether a namespace accepts new objects;
    ``services`` allocates cluster IPs and node ports; ``validator`` has
    ``validate(obj, old=None, strict=False) -> causes``; ``defaults`` fills
    defaults in place. ``on_removed`` is called after an object leaves the
    store (set by the deletion logic). ``check_names`` (set by the CRD
    controller) returns the causes for a CRD whose names are already in use.
    """

    def __init__(self, storage: Storage, validator, defaults: Callable[[dict], dict],
                 namespaces, services: ServiceAllocations):
        self.storage, self.validator, self.defaults = storage, validator, defaults
        self.namespaces, self.services = namespaces, services
        self.on_removed: Optional[Callable] = None
        self.check_names: Optional[Callable[[dict], list[dict]]] = None
        self.admission = Admission()
        self.fields = FieldManager()

    # ---- reads

    async def get(self, target: Target) -> dict:
        """The object as the target's version serves it."""
        with translate(target.info, target.name):
            return to_served(target.info, await self.storage.get(target.key))

    # ---- create

    async def create(self, target: Target, obj: dict, opts: WriteOptions) -> WriteResult:
        """Create ``obj`` (owned by us: mutated) under ``target``'s collection."""
        info = target.info
        check_kind(info, obj)
        check_identity(target, obj)
        md = meta.metadata(obj)
        if not md.get("name") and not md.get("generateName"):
            raise errors.invalid(info, "", [{"reason": "FieldValueRequired", "field": "metadata.name",
                                             "message": "Required value: name or generateName is required"}])
        if info.custom is not None and info.custom.terminating:
            raise errors.method_not_allowed_while("create", "custom resource definition is terminating")
        if info.namespaced:
            await self.namespaces.check_writable(target.namespace, info, md.get("name", ""))
        meta.stamp_new(obj)
        strategies.reset_status_for_create(info, obj)
        if not md.get("name"):
            md["name"] = meta.generated_name(md["generateName"])
        request = AdmissionRequest(CREATE, target, obj, None, opts.user, opts.dry_run)
        self.admission.mutate(request)
        warnings = self.prepare(info, obj, None, opts)
        self.admission.validate(request)
        if opts.apply is None:
            self.fields.on_create(info, obj, opts.field_manager)
        if opts.dry_run:
            return WriteResult(obj, warnings)
        return WriteResult(to_served(info, await self._store_new(target, to_stored(info, obj))), warnings)

    async def _store_new(self, target: Target, obj: dict) -> dict:
        info = target.info
        reserved = await self.services.on_create(obj) if info.builtin_kind == "Service" else None
        try:
            return await self._create_with_name_retry(info, obj)
        except BaseException:
            if reserved is not None:
                await self.services.give_back(reserved)
            raise

    async def _create_with_name_retry(self, info: ResourceInfo, obj: dict) -> dict:
        md = obj["metadata"]
        for _ in range(GENERATE_NAME_ATTEMPTS - 1):
            try:
                with translate(info, md["name"]):
                    return await self.storage.create(info.key(md.get("namespace"), md["name"]), obj)
            except errors.ApiError as exc:
                if exc.reason != "AlreadyExists" or not md.get("generateName"):
                    raise
                md["name"] = meta.generated_name(md["generateName"])
        with translate(info, md["name"]):
            return await self.storage.create(info.key(md.get("namespace"), md["name"]), obj)

    # ---- defaults + validation

    def prepare(self, info: ResourceInfo, obj: dict, old: Optional[dict], opts: WriteOptions) -> list[str]:
        """Default then validate ``obj`` (in place); 422 with causes; returns warnings.

        Unknown fields fail a Strict write; otherwise they are dropped (with a
        warning for Warn), as Kubernetes does."""
        if info.custom is not None:
            return self._prepare_custom(info, obj, old, opts)
        self.defaults(obj)
        causes = list(self.validator.validate(obj, old=old, strict=True))
        unknown = [c for c in causes if _is_unknown_field(c)]
        if unknown and opts.field_validation != "Strict":
            drop_paths(obj, [c["field"] for c in unknown if c.get("field")])
            causes = [c for c in self.validator.validate(obj, old=old, strict=True) if not _is_unknown_field(c)]
        if not any(c["reason"] == "FieldValueTypeInvalid" for c in causes):  # else rules would misread
            causes += strategies.semantic_causes(info, obj, old)
            if self.check_names is not None and is_crd(info):
                causes += self.check_names(obj)
        if causes:
            raise errors.invalid(info, meta.name_of(obj), causes)
        warnings = strategies.warnings_for(info, obj)
        if opts.field_validation == "Warn":
            warnings += [c["message"] for c in unknown]
        return warnings

    def _prepare_custom(self, info: ResourceInfo, obj: dict, old: Optional[dict], opts: WriteOptions) -> list[str]:
        """A custom resource: defaults from its schema, unknown fields pruned (refused under
        Strict), then its schema (ratcheting on update) and the metadata rules; 422 with one
        cause per field."""
        schema = info.custom.schema
        unknown: list[str] = []
        if schema is not None:
            schema.default(obj)
            unknown = schema.prune(obj)
        causes = self.validator.metadata_problems(obj, old, strict=True)
        unknown_metadata = [c["field"] for c in causes if _is_unknown_field(c)]
        drop_paths(obj, unknown_metadata)
        causes = [c for c in causes if not _is_unknown_field(c)]
        unknown = unknown_metadata + unknown
        if schema is not None:
            causes += schema.validate(obj, old)
        if opts.field_validation == "Strict":
            causes += [{"reason": "FieldValueInvalid", "message": f'unknown field "{path}"', "field": path}
                       for path in unknown]
        if causes:
            raise errors.invalid(info, meta.name_of(obj), causes)
        return [f'unknown field "{path}"' for path in unknown] if opts.field_validation == "Warn" else []

    # ---- update / patch

    async def update(self, target: Target, body: dict, opts: WriteOptions) -> WriteResult:
        """PUT: replace the object; optimistic when the body carries a resourceVersion."""
        check_kind(target.info, body)
        check_identity(target, body)
        return await self.write(target, lambda current: deep_copy(body), opts)

    async def write(self, target: Target, make: Callable[[dict], dict], opts: WriteOptions,
                    status_only: bool = False) -> WriteResult:
        """Read-modify-write through guaranteed_update. ``make(current)`` returns the
        client's desired object (it must not mutate ``current``).

        A Service update needing new node ports is retried once they are reserved
        (the step stays pure: it only takes ports from ``pool``)."""
        info = target.info
        warnings: list[str] = []
        pool: list[int] = []
        for _ in range(ALLOCATION_ATTEMPTS):
            seen: list[dict] = []  # the stored object the last step was computed from

            def step(stored: dict) -> dict:
                current = to_served(info, stored)
                seen[:] = [current]
                desired = make(current)
                new = self._merge(target, desired, current, status_only)
                if info.builtin_kind == "Service" and not status_only:
                    self.services.carry(new, current, pool)
                request = AdmissionRequest(UPDATE, target, new, current, opts.user, opts.dry_run)
                self.admission.mutate(request)
                warnings[:] = self.prepare(info, new, current, opts)
                self.admission.validate(request)
                self._record_fields(target, current, new, desired, opts)
                strategies.bump_generation(new, current)
                return to_stored(info, new)

            try:
                result = await self._run_write(target, step, opts)
            except NeedsAllocation as need:
                await self._reserve(need, pool)
                continue
            except BaseException:
                await self.services.ports.release(pool)
                raise
            result = to_served(info, result)
            if opts.dry_run:
                await self.services.ports.release(pool)
                return WriteResult(result, warnings)
            if info.builtin_kind == "Service" and not status_only:
                await self.services.after_update(seen[0], result, pool)
            return WriteResult(await self.finish_if_released(target, result), warnings)
        await self.services.ports.release(pool)
        raise errors.conflict(info, target.name, "the service's node ports kept changing; try again")

    def _record_fields(self, target: Target, current: dict, new: dict, desired: dict, opts: WriteOptions) -> None:
        """managedFields of ``new``: an apply's own (computed by its step), else the writer's update."""
        if opts.apply is None:
            self.fields.on_update(target.info, current, new, opts.field_manager, target.subresource or "")
            return
        managed = (desired.get("metadata") or {}).get("managedFields")
        if managed:
            new["metadata"]["managedFields"] = managed
        else:
            new["metadata"].pop("managedFields", None)

    async def _reserve(self, need: NeedsAllocation, pool: list[int]) -> None:
        try:
            await self.services.reserve(need.service, need, pool)
        except BaseException:
            await self.services.ports.release(pool)
            raise

    async def _run_write(self, target: Target, fn: Callable[[dict], dict], opts: WriteOptions) -> dict:
        with translate(target.info, target.name):
            if opts.dry_run:
                current = await self.storage.get(target.key)
                return fn(current)
            return await self.storage.guaranteed_update(target.key, fn)

    def _merge(self, target: Target, desired: dict, current: dict, status_only: bool) -> dict:
        """The object to store from the client's ``desired`` and the ``current`` one."""
        info = target.info
        if not isinstance(desired, dict):
            raise errors.bad_request("the patched or sent object is not a JSON object")
        if status_only:
            return strategies.merge_status_write(desired, current)
        check_kind(info, desired)
        check_identity(target, desired)
        md = meta.metadata(desired)
        if "resourceVersion" not in md or md["resourceVersion"] in ("", None):
            md["resourceVersion"] = current["metadata"]["resourceVersion"]
        meta.carry_server_fields(desired, current)
        self._check_finalizers(info, desired, current)
        return strategies.merge_main_write(info, desired, current)

    @staticmethod
    def _check_finalizers(info: ResourceInfo, new: dict, old: dict) -> None:
        """A deleting object may lose finalizers but never gain new ones."""
        if not old["metadata"].get("deletionTimestamp"):
            return
        added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
        if added:
            raise errors.ApiError(422, "Invalid", f'{info.kind} "{meta.name_of(old)}" is invalid: '
                                  f"metadata.finalizers: Forbidden: no new finalizers can be added if "
                                  f"the object is being deleted, found new finalizers {sorted(added)}",
                                  {"name": meta.name_of(old), "group": info.group, "kind": info.kind,
                                   "causes": [{"reason": "FieldValueForbidden", "field": "metadata.finalizers",
                                               "message": "Forbidden: no new finalizers can be added if the "
                                                          "object is being deleted"}]})

    async def finish_if_released(self, target: Target, obj: dict) -> dict:
        """Remove an object whose deletion was only waiting for finalizers or a grace period
        of 0; returns what the client should see."""
        md = obj.get("metadata", {})
        if not md.get("deletionTimestamp") or md.get("finalizers"):
            return obj
        if md.get("deletionGracePeriodSeconds") not in (0, None):
            return obj
        if target.info.builtin_kind == "Namespace":
            return obj
        if self.on_removed is None:
            return obj
        return await self.on_removed(target, obj)
