"""HTTP handlers for every resource path, on top of the generic store.

``ResourceHandlers.dispatch`` is the one entry for ``/api/...`` and
``/apis/...``: it resolves the path, picks the verb from the method and the
path's shape, runs it, and answers JSON. Every failure leaves as a Status.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Awaitable, Callable, Optional

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pkube.api import patch as patches
from pkube.api.kinds import Registry
from pkube.apiserver import conversion, errors, requestcontext, subresources
from pkube.apiserver import eviction as evictions
from pkube.apiserver.deletion import Deleter, answers_status, delete_options, deleted_status
from pkube.apiserver.encoding import (JSON, decode, decode_object, dumps, go_escaped, json_response, media_type, read_body,
                                wire)
from pkube.apiserver.listing import ListOptions, list_objects
from pkube.apiserver.negotiation import TableRequest, acceptable, table_of, table_request
from pkube.apiserver.paths import Target, resolve
from pkube.apiserver.resources import FIELD_VALIDATION, ResourceStore, WriteOptions, WriteResult
from pkube.apiserver.watch import EventEncoder, WatchStream
from pkube.apiserver import apply as applying
from pkube.apiserver.apply import manager_of

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH)  # custom resources have no strategic merge keys
BODY_TYPES = ("", JSON, "application/yaml", "application/x-yaml", "text/yaml", "*/*",
              "application/vnd.kubernetes.protobuf")

Handler = Callable[[Request, Target], Awaitable[Response]]


def caller(request: Request):
    """The authenticated user of ``request`` (request.state.user), or None."""
    return getattr(request.state, "user", None)


def request_options(request: Request) -> WriteOptions:
    """The WriteOptions of a request: its query, caller and manager name."""
    return write_options(request.query_params, caller(request), request.headers.get("user-agent", ""))


def write_options(query, user=None, user_agent: str = "") -> WriteOptions:
    """dryRun and fieldValidation from the query (400 on unsupported values); ``user``
    is the authenticated caller (None without authentication); the manager of the write is
    fieldManager, else the User-Agent's product (pkube/apiserver/apply.py)."""
    dry = query.getlist("dryRun") if hasattr(query, "getlist") else []
    if dry and dry != ["All"]:
        raise errors.bad_request(f'dryRun: Unsupported value: {dry!r}: supported values: "All"')
    validation = query.get("fieldValidation") or "Warn"
    if validation not in FIELD_VALIDATION:
        raise errors.bad_request(f'fieldValidation: Unsupported value: "{validation}": supported values: '
                                 '"Ignore", "Strict", "Warn"')
    return WriteOptions(dry_run=bool(dry), field_validation=validation, user=user,
                        field_manager=manager_of(query, user_agent))


def _warning_headers(warnings: list[str]) -> Optional[dict]:
    if not warnings:
        return None
    return {"Warning": requestcontext.warning_header(warnings)}


def unstructured(target: Target) -> bool:
    """Whether ``target``'s bodies are unstructured objects (a custom resource or its status),
    which kube-apiserver writes with sorted keys; a custom resource's Scale is typed."""
    return target.info.custom is not None and target.subresource != "scale"


def _written(result: WriteResult, code: int, target: Target) -> Response:
    return json_response(result.object, code, _warning_headers(result.warnings), unstructured(target))


class ResourceHandlers:
    """The verbs of every resource, over HTTP."""

    def __init__(self, registry: Registry, store: ResourceStore, deleter: Deleter,
                 encoder: EventEncoder, bookmark_interval: float,
                 strategic_patch: Optional[Callable] = None, logs=None):
        self.registry, self.store, self.deleter = registry, store, deleter
        self.logs = logs  # a kubelet_proxy.LogProxy
        self.encoder, self.bookmark_interval = encoder, bookmark_interval
        self.strategic_patch = strategic_patch
        self.table: dict[tuple[str, str, str], Handler] = {
            ("collection", "", "GET"): self.list_or_watch,
            ("collection", "", "POST"): self.create,
            ("collection", "", "DELETE"): self.delete_collection,
            ("item", "", "GET"): self.get,
            ("item", "", "PUT"): self.update,
            ("item", "", "PATCH"): self.patch,
            ("item", "", "DELETE"): self.delete,
            ("item", "status", "GET"): self.get,
            ("item", "status", "PUT"): self.update_status,
            ("item", "status", "PATCH"): self.patch_status,
            ("item", "approval", "GET"): self.get,             # CSRs: the conditions only
            ("item", "approval", "PUT"): self.update_status,   # (pkube/apiserver/certificates.py)
            ("item", "approval", "PATCH"): self.patch_status,
            ("item", "binding", "POST"): self.bind,
            ("item", "eviction", "POST"): self.evict,
            ("item", "log", "GET"): self.log,
            ("item", "scale", "GET"): self.get_scale,
            ("item", "scale", "PUT"): self.update_scale,
            ("item", "scale", "PATCH"): self.patch_scale,
        }

    async def dispatch(self, request: Request) -> Response:
        """Serve one resource request; every failure becomes a Status."""
        target = resolve(self.registry, request.url.path)
        shape = "item" if target.name is not None else "collection"
        handler = self.table.get((shape, target.subresource or "", request.method))
        if handler is None or (shape == "collection" and request.method != "GET"
                               and target.info.namespaced and target.namespace is None):
            raise errors.method_not_allowed(request.method, request.url.path)
        if target.subresource != "log" and not acceptable(request.headers.get("accept", "")):
            raise errors.not_acceptable()
        response = await handler(request, target)
        if target.info.custom is not None and target.info.custom.deprecation:
            response.headers.append("Warning", _warning_headers([target.info.custom.deprecation])["Warning"])
        return response

    # ---- collection

    async def list_or_watch(self, request: Request, target: Target) -> Response:
        opts = ListOptions.parse(target.info, request.query_params)
        table = table_request(request.headers.get("accept", ""), request.query_params)
        if opts.watch:
            return await self.watch(target, opts, table)
        converting = conversion.converts(target.info)
        listed = await list_objects(self.store.storage, target.info, target.prefix, opts,
                                    raw=table is None and not converting and not unstructured(target))
        if converting:
            listed.items = [conversion.to_served(target.info, item) for item in listed.items]
        if table is not None:
            return json_response(table_of(target.info, listed.items, table, self._list_meta(listed)))
        return Response(self._list_body(target, listed), media_type=JSON)

    @staticmethod
    def _list_meta(listed) -> dict:
        list_meta = {"resourceVersion": str(listed.revision)}
        if listed.continue_token:
            list_meta["continue"] = listed.continue_token
            if listed.remaining is not None:
                list_meta["remainingItemCount"] = listed.remaining
        return list_meta

    def _list_body(self, target: Target, listed) -> bytes:
        """A typed list (TypeMeta, ListMeta, items), or for a custom resource the list
        UnstructuredList's MarshalJSON writes: keys sorted, metadata.continue always set."""
        info = target.info
        list_meta = self._list_meta(listed)
        if unstructured(target):
            return wire({"apiVersion": info.api_version, "items": listed.items, "kind": info.list_kind,
                         "metadata": {"continue": "", **list_meta}}, unstructured=True)
        head = (b'{"kind":"' + info.list_kind.encode() + b'","apiVersion":"' + info.api_version.encode()
                + b'","metadata":' + dumps(list_meta) + b',"items":[')
        return go_escaped(head + b",".join(item if isinstance(item, bytes) else dumps(item)
                                           for item in listed.items) + b"]}") + b"\n"

    async def watch(self, target: Target, opts: ListOptions, table: Optional[TableRequest] = None) -> Response:
        info = target.info
        transform = None  # events go out as stored (and encoded once for every watcher)
        if table is not None:
            transform = lambda obj: table_of(info, [obj], table)  # noqa: E731
        elif conversion.converts(info):
            transform = lambda obj: conversion.to_served(info, obj)  # noqa: E731
        stream = WatchStream(self.store.storage, target.info, target.prefix, opts, self.encoder,
                             self.bookmark_interval, transform, unstructured=table is None and unstructured(target))
        await stream.start()
        return StreamingResponse(stream.stream(), media_type=JSON)

    async def create(self, request: Request, target: Target) -> Response:
        opts = request_options(request)
        body = await self._body_object(request)
        return _written(await self.store.create(target, body, opts), 201, target)

    async def delete_collection(self, request: Request, target: Target) -> Response:
        opts = ListOptions.parse(target.info, request.query_params)
        delete_opts = delete_options(request.query_params, await self._optional_body(request))
        listed = await list_objects(self.store.storage, target.info, target.prefix,
                                    ListOptions(opts.label_selector, opts.field_selector))
        deleted = await self.deleter.delete_collection(target, listed.items, delete_opts)
        listed.items = [conversion.to_served(target.info, item) for item in deleted]
        listed.continue_token = None
        return Response(self._list_body(target, listed), media_type=JSON)

    # ---- item

    async def get(self, request: Request, target: Target) -> Response:
        obj = await self.store.get(target)
        table = table_request(request.headers.get("accept", ""), request.query_params)
        if table is not None and not target.subresource:
            return json_response(table_of(target.info, [obj], table,
                                          {"resourceVersion": obj["metadata"].get("resourceVersion", "")}))
        return json_response(obj, unstructured=unstructured(target))

    async def update(self, request: Request, target: Target) -> Response:
        opts = request_options(request)
        return _written(await self.store.update(target, await self._body_object(request), opts), 200, target)

    async def patch(self, request: Request, target: Target) -> Response:
        if media_type(request) == APPLY_PATCH:
            return await self.apply(request, target)
        applying.check_options(request.query_params, "PatchOptions", apply=False)
        opts = request_options(request)
        apply = await self._patch_function(request, target)
        return _written(await self.store.write(target, apply, opts), 200, target)

    async def delete(self, request: Request, target: Target) -> Response:
        opts = delete_options(request.query_params, await self._optional_body(request))
        deleted = await self.deleter.delete(target, opts)
        if answers_status(target.info, deleted):
            return json_response(deleted_status(target.info, deleted))
        return json_response(conversion.to_served(target.info, deleted), unstructured=unstructured(target))

    async def apply(self, request: Request, target: Target, status_only: bool = False) -> Response:
        """An apply patch (server-side apply); creates the object when absent (201)."""
        query = request.query_params
        applying.check_options(query, "PatchOptions", apply=True)
        config = applying.decode_config(await read_body(request))
        opts = replace(request_options(request), apply=applying.ApplyRequest(config, applying.parse_force(query)))
        step = self.store.fields.apply_step(target.info, opts.apply, opts.field_manager, target.subresource or "")
        for _ in range(2):
            try:
                return _written(await self.store.write(target, step, opts, status_only=status_only), 200, target)
            except errors.ApiError as exc:
                if status_only or not applying.object_missing(exc, target):
                    raise
            try:
                return _written(await self.store.create(target, step({}), opts), 201, target)
            except errors.ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        raise errors.conflict(target.info, target.name, "the object was created and deleted while applying")

    # ---- subresources

    async def update_status(self, request: Request, target: Target) -> Response:
        opts = request_options(request)
        body = await self._body_object(request)
        self._check_body_name(body, target)
        return _written(await self.store.write(target, lambda current: body, opts, status_only=True), 200, target)

    async def patch_status(self, request: Request, target: Target) -> Response:
        if media_type(request) == APPLY_PATCH and target.subresource == applying.STATUS:
            return await self.apply(request, target, status_only=True)
        opts = request_options(request)
        apply = await self._patch_function(request, target)
        return _written(await self.store.write(target, apply, opts, status_only=True), 200, target)

    async def bind(self, request: Request, target: Target) -> Response:
        return json_response(await subresources.bind(self.store, target, await self._body_object(request)), 201)

    async def evict(self, request: Request, target: Target) -> Response:
        """pods/eviction (kubectl drain): a delete that honours PodDisruptionBudgets."""
        eviction = await self._body_object(request)
        self._check_body_name(eviction, target)
        pod = Target(target.info, target.namespace, target.name)
        return json_response(await evictions.evict(self.store, self.deleter, self.registry, pod, eviction), 201)

    async def log(self, request: Request, target: Target) -> Response:
        if self.logs is None:
            raise errors.method_not_allowed("GET", request.url.path)
        body = await self.logs.open(target, request.query_params)
        return StreamingResponse(body, media_type="text/plain")

    async def get_scale(self, request: Request, target: Target) -> Response:
        return json_response(await subresources.get_scale(self.store, target))

    async def update_scale(self, request: Request, target: Target) -> Response:
        opts = request_options(request)
        body = await self._body_object(request)
        return json_response(await subresources.write_scale(self.store, target, lambda scale: body, opts))

    async def patch_scale(self, request: Request, target: Target) -> Response:
        if media_type(request) == APPLY_PATCH:
            return await self.apply_scale(request, target)
        opts = request_options(request)
        apply = await self._patch_function(request, target, kind="Scale")
        return json_response(await subresources.write_scale(self.store, target, apply, opts))

    async def apply_scale(self, request: Request, target: Target) -> Response:
        """An apply patch of a Scale; the object must exist (404 otherwise)."""
        applying.check_options(request.query_params, "PatchOptions", apply=True)
        config = applying.decode_config(await read_body(request))
        opts = replace(request_options(request),
                       apply=applying.ApplyRequest(config, applying.parse_force(request.query_params)))
        return json_response(await subresources.apply_scale(self.store, target, opts))

    # ---- bodies

    async def _body_object(self, request: Request) -> dict:
        content_type = media_type(request)
        if content_type not in BODY_TYPES:
            raise errors.unsupported_media_type(content_type)
        return decode_object(await read_body(request), content_type)

    async def _optional_body(self, request: Request) -> Optional[dict]:
        raw = await read_body(request)
        if not raw.strip():
            return None
        return decode_object(raw, media_type(request) if media_type(request) in BODY_TYPES else JSON)

    @staticmethod
    def _check_body_name(body: dict, target: Target) -> None:
        name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
        if name and name != target.name:
            raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL ({target.name})")

    async def _patch_function(self, request: Request, target: Target, kind: str = "") -> Callable[[dict], dict]:
        """Parse the patch body; returns current -> patched (raising 422 when it does not apply)."""
        content_type = media_type(request)
        accepted = CUSTOM_PATCH_TYPES if target.info.custom is not None else PATCH_TYPES
        if content_type == APPLY_PATCH or content_type not in accepted:
            raise errors.unsupported_patch_type()
        document = decode(await read_body(request), JSON)
        if content_type == JSON_PATCH and not isinstance(document, list):
            raise errors.bad_request("a JSON patch must be a list of operations")
        if content_type != JSON_PATCH and not isinstance(document, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        kind = kind or target.info.kind
        apply = self._patcher(content_type, kind)

        def patched(current: dict) -> dict:
            try:
                return apply(current, document)  # every patcher returns a new object
            except (patches.PatchError, ValueError, TypeError, KeyError, IndexError) as exc:
                raise errors.ApiError(422, "Invalid", f"the patch could not be applied: {exc}",
                                      {"name": target.name, "kind": kind}) from None
        return patched

    def _patcher(self, content_type: str, kind: str) -> Callable[[dict, object], dict]:
        if content_type == JSON_PATCH:
            return patches.json_patch
        if content_type == STRATEGIC_PATCH and self.strategic_patch is not None:
            return lambda target, doc: self.strategic_patch(target, doc, kind)
        return patches.json_merge_patch
