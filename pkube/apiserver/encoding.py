"""Encoding and decoding of request and response bodies.

JSON is encoded compactly once (``dumps``) and sent as Kubernetes' Go encoder writes it
(``wire``: <, >, & and U+2028/U+2029 escaped, a trailing newline); YAML bodies are accepted
on input. Decoding errors become 400 BadRequest; an oversized body 413.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from pkube.api.jsonvalue import dumps, dumps_sorted, go_escaped, loads
from pkube.apiserver import errors, protobuf

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 100
JSON = "application/json"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
PROTOBUF = "application/vnd.kubernetes.protobuf"


def wire(obj: Any, unstructured: bool = False) -> bytes:
    """``obj`` as kube-apiserver writes a JSON body (json.NewEncoder(w).Encode): escaped as Go
    escapes, ending in a newline. ``unstructured`` (custom resources): keys sorted, as Go
    encodes the map[string]interface{} of an unstructured object; else in the given order."""
    return go_escaped(dumps_sorted(obj) if unstructured else dumps(obj)) + b"\n"


def json_response(obj: Any, status_code: int = 200, headers: dict | None = None,
                  unstructured: bool = False) -> Response:
    return Response(wire(obj, unstructured), status_code=status_code, media_type=JSON, headers=headers)


def error_response(err: errors.ApiError) -> Response:
    """The Status of ``err`` (or, for a PlainTextError, what Go's http.Error writes)."""
    if isinstance(err, errors.PlainTextError):
        return Response(err.message + "\n", err.code, media_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff", **err.headers})
    return json_response(err.status(), err.code)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body; 413 when it exceeds ``limit`` (checked before and while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:   # a body shorter than its Content-Length: not a server error
        raise errors.bad_request("the client closed the connection before sending the whole body") from None
    return b"".join(chunks)


def decode(raw: bytes, content_type: str) -> Any:
    """Parse a JSON, YAML or Kubernetes-protobuf document; 400 on malformed input or an
    empty body, 415 for a protobuf kind we have no schema for."""
    if not raw.strip():
        raise errors.bad_request("the request body is empty")
    if content_type == PROTOBUF:
        return _protobuf_object(raw)
    try:
        if content_type in YAML_TYPES:
            doc = _yaml_as_json(raw)
        else:
            doc = loads(raw)
    except (ValueError, TypeError, yaml.YAMLError, RecursionError) as exc:
        kind = "YAML" if content_type in YAML_TYPES else "JSON"
        raise errors.bad_request(f"error decoding {kind}: {_first_line(exc)}") from None
    if content_type in YAML_TYPES or _containers(raw) > MAX_DEPTH:
        check_depth(doc)
    return doc


def _containers(raw: bytes) -> int:
    """An upper bound of the nesting depth of the JSON text ``raw`` (one C-speed pass)."""
    return raw.count(b"{") + raw.count(b"[")


class _JsonCompatibleLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings (sigs.k8s.io/yaml). Aliases
    are refused: expanding nested ones turns a small body into an enormous one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not supported")
        return super().compose_node(parent, index)


_JsonCompatibleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _yaml_as_json(raw: bytes) -> Any:
    """A YAML document as the JSON value it stands for; ValueError/TypeError when it has
    no JSON form (complex keys, binary, NaN)."""
    doc = yaml.load(raw, Loader=_JsonCompatibleLoader)  # noqa: S506 - a SafeLoader subclass
    return loads(json.dumps(doc, allow_nan=False))


def _protobuf_object(raw: bytes) -> dict:
    try:
        doc = protobuf.decode_protobuf(raw)
    except protobuf.UnsupportedKindError as exc:
        raise errors.unsupported_media_type(f"{PROTOBUF} ({exc})") from None
    except protobuf.ProtobufError as exc:
        raise errors.bad_request(f"error decoding protobuf: {exc}") from None
    check_depth(doc)
    return doc


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """400 when ``doc`` nests deeper than ``limit`` (objects need ~20 levels; deeper
    bodies would only exhaust recursion in later steps)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise errors.bad_request(f"the body nests deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def decode_object(raw: bytes, content_type: str) -> dict:
    """Like ``decode`` but the document must be an object (a JSON dict)."""
    doc = decode(raw, content_type)
    if not isinstance(doc, dict):
        raise errors.bad_request(f"the body must be a JSON object, not {type(doc).__name__}")
    return doc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
