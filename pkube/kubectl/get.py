"""``pkubectl get``: tables from the server, or objects in any -o format, and -w.

The columns live in the apiserver (it answers ``Accept: ...;as=Table``); this
module asks for them, in pages of 500, and only falls back to NAME / CREATED AT
when a server answers a plain list.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Iterable, Optional

from pkube.kubectl.errors import CliError
from pkube.kubectl.printers import (OutputFormat, TableOptions, align, check_sort_by, parse_output, print_objects,
                              sort_key, sort_table, table_rows)
from pkube.kubectl.session import TABLE_ACCEPT, ApiResource, Session

PAGE_SIZE = 500


@dataclass
class GetRequest:
    """What to list: one resource type, optional names, selectors, namespace (None = all)."""

    resource: ApiResource
    names: tuple[str, ...]
    namespace: Optional[str]
    label_selector: Optional[str] = None
    field_selector: Optional[str] = None
    resource_version: str = ""


def parse_targets(session: Session, words: list[str]) -> list[tuple[ApiResource, tuple[str, ...]]]:
    """``TYPE[,TYPE] [NAME...]`` or ``TYPE/NAME...`` as (resource, names) pairs, in order."""
    if not words:
        raise CliError("You must specify the type of resource to get. Use \"pkubectl api-resources\" "
                       "for a complete list of supported resources.")
    if "/" in words[0]:
        pairs: dict[ApiResource, list[str]] = {}
        for word in words:
            kind, sep, name = word.partition("/")
            if not sep or not name:
                raise CliError(f"there is no need to specify a resource type as a separate argument when "
                               f"passing arguments in resource/name form (e.g. 'pkubectl get resource/<resource_name>' "
                               f"instead of 'pkubectl get resource resource/<resource_name>'")
            pairs.setdefault(session.resolve(kind), []).append(name)
        return [(res, tuple(names)) for res, names in pairs.items()]
    resources = session.resolve_many(words[0])
    if len(resources) > 1 and words[1:]:
        raise CliError("you may only specify a single resource type when passing names")
    return [(res, tuple(words[1:])) for res in resources]


def resource_path(res: ApiResource, namespace: Optional[str], name: Optional[str] = None) -> str:
    from pkube.client.resources import resource_path as build

    return build(res, namespace, name)


def fetch_table(session: Session, req: GetRequest, include_object: str) -> dict:
    """The server's Table for ``req`` (all pages merged); a local one if it answers a list."""
    if req.names:
        tables = [_table_page(session, resource_path(req.resource, req.namespace, name),
                              {"includeObject": include_object}, req.resource) for name in req.names]
        return _merge_tables(tables)
    params = {"includeObject": include_object, "limit": PAGE_SIZE,
              "labelSelector": req.label_selector, "fieldSelector": req.field_selector}
    tables, token = [], None
    while True:
        page = _table_page(session, resource_path(req.resource, req.namespace),
                           dict(params, **({"continue": token} if token else {})), req.resource)
        tables.append(page)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            req.resource_version = (page.get("metadata") or {}).get("resourceVersion", "")
            return _merge_tables(tables)


def _table_page(session: Session, path: str, params: dict, res: ApiResource) -> dict:
    params = {k: v for k, v in params.items() if v is not None}
    data = session.request("GET", path, params=params, accept=TABLE_ACCEPT).json()
    return data if data.get("kind") == "Table" else local_table(res, data)


def _merge_tables(tables: list[dict]) -> dict:
    merged = dict(tables[0], rows=[])
    for table in tables:
        merged["rows"].extend(table.get("rows") or [])
    merged["metadata"] = tables[-1].get("metadata") or {}
    return merged


def local_table(res: ApiResource, data: dict) -> dict:
    """NAME / CREATED AT for a server that answered a plain list or object (no Table support)."""
    items = data.get("items") if "items" in data else [data]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": data.get("metadata") or {},
            "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "priority": 0},
                                  {"name": "Created At", "type": "date", "format": "", "priority": 0}],
            "rows": [{"cells": [(o.get("metadata") or {}).get("name", ""),
                                (o.get("metadata") or {}).get("creationTimestamp", "")],
                      "object": o} for o in items or []]}


def fetch_objects(session: Session, req: GetRequest) -> tuple[list[dict], str]:
    """The full objects of ``req`` (apiVersion and kind filled in) and the list's resourceVersion."""
    if req.names:
        objects = [session.get_json(resource_path(req.resource, req.namespace, n)) for n in req.names]
        return [_typed(o, req.resource) for o in objects], ""
    listed = session.client.list_all(req.resource, req.namespace, req.label_selector, req.field_selector,
                                     page_size=PAGE_SIZE)
    items = [_typed(o, req.resource) for o in listed.get("items") or []]
    req.resource_version = (listed.get("metadata") or {}).get("resourceVersion", "")
    return items, req.resource_version


def _typed(obj: dict, res: ApiResource) -> dict:
    obj.setdefault("apiVersion", res.api_version)
    obj.setdefault("kind", res.kind)
    return obj


def no_resources_message(requests: list[GetRequest]) -> str:
    namespaces = {r.namespace for r in requests if r.resource.namespaced}
    if len(namespaces) == 1 and None not in namespaces:
        return f"No resources found in {namespaces.pop()} namespace."
    return "No resources found"


def run_raw(session: Session, args, out=sys.stdout) -> int:
    """``get --raw PATH``: the server's answer to GET PATH, printed as it is (a refusal is the
    server's Status, as one line); CliError when resources are named too, as kubectl."""
    if args.resources or args.output or args.selector or args.watch:
        raise CliError("arguments may not be passed when --raw is specified")
    path, _, query = args.raw.partition("?")
    params = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
    body = session.request("GET", path if path.startswith("/") else "/" + path, params=params).content
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(body)
        buffer.flush()
    else:
        out.write(body.decode("utf-8", "replace"))
    return 0


def run_get(session: Session, args, out=sys.stdout, err=sys.stderr) -> int:
    """Print what ``args`` asks for; returns the exit code."""
    fmt = parse_output(args.output)
    if args.sort_by:
        check_sort_by(args.sort_by)
    namespace = None if args.all_namespaces else session.namespace
    requests = [GetRequest(res, names, namespace if res.namespaced else None, args.selector, args.field_selector)
                for res, names in parse_targets(session, args.resources)]
    widths: list[int] = []  # column widths, kept from the first table through -w rows
    if fmt.is_table:
        printed = _print_tables(session, requests, fmt, args, out, widths)
    else:
        printed = _print_objects(session, requests, fmt, args, out)
    if not printed and not any(r.names for r in requests) and not args.watch:
        err.write(no_resources_message(requests) + "\n")
    if args.watch or args.watch_only:
        _watch(session, requests, fmt, args, out, widths)
    return 0


def _table_options(args, fmt: OutputFormat, multiple: bool, res: ApiResource) -> TableOptions:
    return TableOptions(wide=fmt.kind == "wide", with_namespace=bool(args.all_namespaces) and res.namespaced,
                        show_labels=bool(args.show_labels), name_prefix=f"{res.qualified}/" if multiple else "",
                        no_headers=bool(getattr(args, "no_headers", False)))


def _print_tables(session: Session, requests: list[GetRequest], fmt: OutputFormat, args, out,
                  widths: list[int]) -> int:
    include = "Object" if args.sort_by else "Metadata"
    multiple = len(requests) > 1
    printed = 0
    for req in requests:
        if args.watch_only:
            continue
        table = fetch_table(session, req, include)
        if not table.get("rows"):
            continue
        if args.sort_by:
            table = sort_table(table, args.sort_by)
        rows = table_rows(table, _table_options(args, fmt, multiple, req.resource))
        out.write(("\n" if printed else "") + align(rows, widths if len(requests) == 1 else None))
        printed += len(table["rows"])
    return printed


def _print_objects(session: Session, requests: list[GetRequest], fmt: OutputFormat, args, out) -> int:
    objects: list[dict] = []
    for req in requests:
        if not args.watch_only:
            objects.extend(fetch_objects(session, req)[0])
    if args.sort_by:
        objects.sort(key=lambda o: sort_key(o, args.sort_by))
    single = len(requests) == 1 and len(requests[0].names) == 1
    if objects or single:
        out.write(print_objects(objects, fmt, single, getattr(args, "show_managed_fields", False)))
    return len(objects)


def _watch(session: Session, requests: list[GetRequest], fmt: OutputFormat, args, out,
           widths: list[int]) -> None:
    """Stream changes of the first requested type until the server closes the watch."""
    if len(requests) != 1:
        raise CliError("you may only specify a single resource type with --watch")
    req = requests[0]
    params = {"watch": "1", "labelSelector": req.label_selector, "fieldSelector": req.field_selector,
              "resourceVersion": req.resource_version or None}
    if req.names:
        params["fieldSelector"] = f"metadata.name={req.names[0]}"
    for kind, obj in _watch_events(session, req, params):
        if fmt.is_table:
            table = obj if obj.get("kind") == "Table" else _row_table(session, req, obj)
            options = _table_options(args, fmt, False, req.resource)
            out.write(align(table_rows(table, options, header=False), widths))
        else:
            out.write(print_objects([_typed(obj, req.resource)], fmt, True, getattr(args, "show_managed_fields", False)))
        out.flush()


def _row_table(session: Session, req: GetRequest, obj: dict) -> dict:
    name = (obj.get("metadata") or {}).get("name", "")
    namespace = (obj.get("metadata") or {}).get("namespace") or req.namespace
    from pkube.client.errors import ApiError

    try:
        return _table_page(session, resource_path(req.resource, namespace, name), {}, req.resource)
    except ApiError:  # deleted meanwhile: print what the event carried
        return local_table(req.resource, obj)


def _watch_events(session: Session, req: GetRequest, params: dict) -> Iterable[tuple[str, dict]]:
    """Watch events of ``req``; objects are Tables when the server can send them (like kubectl -w)."""
    import httpx
    from pkube.client.errors import error_from_response, unavailable

    params = {k: v for k, v in params.items() if v is not None}
    path = resource_path(req.resource, req.namespace)
    try:
        with session.client.http.stream("GET", path, params=params, headers={"Accept": TABLE_ACCEPT},
                                        timeout=httpx.Timeout(None, connect=10.0)) as response:
            if response.status_code >= 400:
                raise error_from_response(response.status_code, response.read())
            for line in response.iter_lines():
                if line.strip():
                    event = json.loads(line)
                    yield event.get("type", ""), event.get("object") or {}
    except httpx.TransportError as error:
        raise unavailable(session.config.server + path, error) from None
