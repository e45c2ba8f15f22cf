"""The OpenAPI documents the apiserver serves at /openapi/v2 and /openapi/v3.

kubectl reads them for three things: ``apply`` checks that a kind's PATCH
operation takes the ``fieldValidation`` query parameter (then it leaves
``--validate=strict`` to the server) and accepts
``application/strategic-merge-patch+json`` (then it computes the three-way
patch from the schema's ``x-kubernetes-patch-*`` extensions); ``explain``
renders the schemas of ``components.schemas``, found through their
``x-kubernetes-group-version-kind`` extension.

The schemas are Kubernetes' own, taken offline from the JSON schemas that
kubernetes-validate ships (one ``_definitions.json`` per Kubernetes version),
restricted to what the kinds we serve reach, and rewritten into OpenAPI form:
one ``type`` (not ``[type, "null"]``), ``$ref`` into ``#/components/schemas``
(v3, wrapped in ``allOf`` when the reference has siblings, as Kubernetes does)
or ``#/definitions`` (v2), and IntOrString / Quantity as typed strings.

Documents are built once per ``OpenAPIDocuments`` object (~0.15 s for all
four group-versions; api/v1 is ~325 KB of JSON, apps/v1 ~220 KB, v2 ~370 KB);
``default_documents()`` memoizes one for the built-in registry.

Serving notes: kubectl fetches ``/openapi/v3``, then each group-version at its
``serverRelativeURL`` (``?hash=``), and reads ``/openapi/v2`` only as a
fallback, asking for protobuf (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``):
answer 406 to a request that does not accept JSON rather than sending JSON it
cannot parse; ``openapi_v2()`` is for JSON clients.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from pkube.api.kinds import ResourceInfo

SCHEMA_VERSION = "v1.32.0"
V3_PREFIX = "#/components/schemas/"
V2_PREFIX = "#/definitions/"
SOURCE_PREFIX = "#/$defs/"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
SCALE = "io.k8s.api.autoscaling.v1.Scale"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
# Custom resources take no strategic merge patch: kubectl apply sends them a JSON merge patch.
CUSTOM_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")
WRITE_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
INT_OR_STRING_DOC = "IntOrString is a type that can hold an int32 or a string."
QUANTITY_DOC = "Quantity is a fixed-point representation of a number (e.g. 100m, 1Gi)."
# Swagger 2.0 has no oneOf: Kubernetes writes these two as formatted strings there ...
V2_SPECIAL_SCHEMAS = {
    INT_OR_STRING: {"type": "string", "format": "int-or-string", "description": INT_OR_STRING_DOC},
    QUANTITY: {"type": "string", "format": "quantity", "description": QUANTITY_DOC},
}
# ... and as oneOf in v3 (kubectl explain then names them: <IntOrString>, <map[string]Quantity>).
V3_SPECIAL_SCHEMAS = {
    INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}],
                    "description": INT_OR_STRING_DOC},
    QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}], "description": QUANTITY_DOC},
}
TYPE_META_FIELDS = ("apiVersion", "kind")


class OpenAPIError(RuntimeError):
    """The bundled schemas cannot be found or read (a broken install)."""


def schema_directory(version: str = SCHEMA_VERSION) -> Path:
    """Where kubernetes-validate keeps the JSON schemas of one Kubernetes version."""
    import kubernetes_validate  # deferred: only the apiserver needs it

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"{version}-local"


def load_definitions(version: str = SCHEMA_VERSION) -> dict:
    """All Kubernetes schema definitions of ``version``, by their full name."""
    path = schema_directory(version) / "_definitions.json"
    try:
        return json.loads(path.read_text())["$defs"]
    except (OSError, ValueError, KeyError) as err:
        raise OpenAPIError(f"read OpenAPI definitions {path}: {err}") from None


def gvk_of(definition: dict) -> list[dict]:
    return definition.get("x-kubernetes-group-version-kind") or []


def definition_name(definitions: dict, info: ResourceInfo) -> Optional[str]:
    """The definition holding ``info``'s kind (by its group-version-kind), or None."""
    for name, definition in definitions.items():
        for gvk in gvk_of(definition):
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (info.group, info.version, info.kind):
                return name
    return None


def reachable(definitions: dict, roots: Iterable[str]) -> list[str]:
    """The definitions ``roots`` reference, transitively (roots included), sorted."""
    seen: set[str] = set()
    pending = [r for r in roots if r in definitions]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(ref for ref in _refs(definitions[name]) if ref in definitions and ref not in seen)
    return sorted(seen)


def _refs(node) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SOURCE_PREFIX):
            yield ref[len(SOURCE_PREFIX):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def convert_schema(node, ref_prefix: str, wrap_refs: bool):
    """One JSON-schema node rewritten as an OpenAPI schema (see the module docstring)."""
    if isinstance(node, list):
        return [convert_schema(v, ref_prefix, wrap_refs) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            value = next((t for t in value if t != "null"), "object")
        elif key == "$ref" and isinstance(value, str):
            value = ref_prefix + value.split("/")[-1]
        elif key in ("properties", "patternProperties"):
            value = {k: convert_schema(v, ref_prefix, wrap_refs) for k, v in value.items()}
        else:
            value = convert_schema(value, ref_prefix, wrap_refs)
        out[key] = value
    if wrap_refs and "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _convert_definitions(definitions: dict, names: list[str], ref_prefix: str, wrap_refs: bool) -> dict:
    specials = V3_SPECIAL_SCHEMAS if wrap_refs else V2_SPECIAL_SCHEMAS
    schemas = {}
    for name in names:
        special = specials.get(name)
        schemas[name] = copy.deepcopy(special) if special else _without_type_meta_enums(
            convert_schema(definitions[name], ref_prefix, wrap_refs))
    return schemas


def _without_type_meta_enums(schema: dict) -> dict:
    """kubernetes-validate pins apiVersion and kind with an enum; Kubernetes' own OpenAPI does not."""
    for field_name in TYPE_META_FIELDS:
        prop = (schema.get("properties") or {}).get(field_name)
        if isinstance(prop, dict):
            prop.pop("enum", None)
    return schema


# ---------------------------------------------------------------- custom resources

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers "
                   "should convert recognized schemas to the latest internal value, and may reject "
                   "unrecognized values.")
KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may "
            "infer this from the endpoint the client submits requests to.")
METADATA_DOC = ("Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
                "sig-architecture/api-conventions.md#metadata")


def custom_definition_name(info: ResourceInfo) -> str:
    """Kubernetes' name for a custom resource's schema: the group reversed, then version and kind
    (stable.example.com/v1 CronTab -> com.example.stable.v1.CronTab)."""
    return ".".join([*reversed(info.group.split(".")), info.version, info.kind])


def custom_definitions(resources: Iterable[ResourceInfo]) -> dict:
    """The schema definitions of the custom resources among ``resources`` (source form:
    ``$ref`` into ``#/$defs/``), each with its group-version-kind and ObjectMeta."""
    found = {}
    for info in resources:
        custom = getattr(info, "custom", None)
        if custom is None:
            continue
        schema = copy.deepcopy(custom.openapi_schema) or {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "description": API_VERSION_DOC}
        properties["kind"] = {"type": "string", "description": KIND_DOC}
        properties["metadata"] = {"$ref": SOURCE_PREFIX + OBJECT_META, "description": METADATA_DOC}
        schema["type"] = "object"
        schema["x-kubernetes-group-version-kind"] = [{"group": info.group, "kind": info.kind,
                                                      "version": info.version}]
        found[custom_definition_name(info)] = schema
    return found


# ---------------------------------------------------------------- paths and operations

def _collection_path(info: ResourceInfo) -> str:
    root = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    scope = "/namespaces/{namespace}" if info.namespaced else ""
    return f"{root}{scope}/{info.plural}"


def _path_parameters(info: ResourceInfo, named: bool) -> list[dict]:
    params = []
    if named:
        params.append({"name": "name", "in": "path", "required": True, "description": f"name of the {info.kind}",
                       "schema": {"type": "string", "uniqueItems": True}})
    if info.namespaced:
        params.append({"name": "namespace", "in": "path", "required": True,
                       "description": "object name and auth scope, such as for teams and projects",
                       "schema": {"type": "string", "uniqueItems": True}})
    params.append({"name": "pretty", "in": "query", "schema": {"type": "string", "uniqueItems": True}})
    return params


def _query(names: Iterable[str]) -> list[dict]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _v3_operation(info: ResourceInfo, action: str, verb: str, schema_ref: str, *,
                  body_types: Iterable[str] = (), query: Iterable[str] = (), kind: Optional[str] = None) -> dict:
    content = {"schema": {"$ref": V3_PREFIX + schema_ref}}
    op = {
        "operationId": f"{verb}{info.kind}",
        "tags": [info.group_version.replace("/", "_")],
        "parameters": _query(query),
        "responses": {"200": {"description": "OK", "content": {"application/json": content}},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version,
                                            "kind": kind or info.kind},
    }
    body_types = list(body_types)
    if body_types:
        body_schema = {"type": "object"} if action == "patch" else content["schema"]
        op["requestBody"] = {"required": True, "content": {t: {"schema": body_schema} for t in body_types}}
    return op


def v3_paths(info: ResourceInfo, schema_ref: str) -> dict:
    """The OpenAPI v3 path items of one resource (collection, object, scale when served)."""
    collection, item = _collection_path(info), _collection_path(info) + "/{name}"
    write = ("application/json", "application/yaml")
    patch_types = CUSTOM_PATCH_TYPES if getattr(info, "custom", None) is not None else PATCH_TYPES
    paths = {
        collection: {
            "get": _v3_operation(info, "list", "list", schema_ref,
                                 query=("labelSelector", "fieldSelector", "limit", "continue", "watch")),
            "post": _v3_operation(info, "post", "create", schema_ref, body_types=write, query=WRITE_QUERY_PARAMS),
            "parameters": _path_parameters(info, named=False),
        },
        item: {
            "get": _v3_operation(info, "get", "read", schema_ref),
            "put": _v3_operation(info, "put", "replace", schema_ref, body_types=write, query=WRITE_QUERY_PARAMS),
            "patch": _v3_operation(info, "patch", "patch", schema_ref, body_types=patch_types,
                                   query=(*WRITE_QUERY_PARAMS, "force")),
            "delete": _v3_operation(info, "delete", "delete", schema_ref, query=("gracePeriodSeconds",
                                                                                  "propagationPolicy", "dryRun")),
            "parameters": _path_parameters(info, named=True),
        },
    }
    if "scale" in info.subresources:
        paths[item + "/scale"] = {
            "get": _v3_operation(info, "get", "read", SCALE, kind="Scale"),
            "patch": _v3_operation(info, "patch", "patch", SCALE, body_types=patch_types,
                                   query=WRITE_QUERY_PARAMS, kind="Scale"),
            "parameters": _path_parameters(info, named=True),
        }
    return paths


def _v2_operation(op3: dict) -> dict:
    """A v3 operation rewritten for Swagger 2.0 (body parameter, consumes/produces)."""
    op = {k: v for k, v in op3.items() if k not in ("requestBody", "responses", "parameters")}
    op["parameters"] = [_v2_parameter(p) for p in op3.get("parameters", [])]
    op["produces"] = ["application/json", "application/yaml"]
    op["schemes"] = ["https"]
    op["responses"] = {"200": {"description": "OK", "schema": {
        "$ref": op3["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].replace(V3_PREFIX, V2_PREFIX)}},
        "401": {"description": "Unauthorized"}}
    body = op3.get("requestBody")
    if body:
        schema = next(iter(body["content"].values()))["schema"]
        if "$ref" in schema:
            schema = {"$ref": schema["$ref"].replace(V3_PREFIX, V2_PREFIX)}
        op["consumes"] = list(body["content"])
        op["parameters"].insert(0, {"name": "body", "in": "body", "required": True, "schema": schema})
    return op


def _v2_parameter(param: dict) -> dict:
    out = {k: v for k, v in param.items() if k != "schema"}
    out["type"] = param.get("schema", {}).get("type", "string")
    return out


def _v2_paths(paths3: dict) -> dict:
    paths = {}
    for path, item in paths3.items():
        paths[path] = {method: (_v2_operation(op) if method != "parameters" else [_v2_parameter(p) for p in op])
                       for method, op in item.items()}
    return paths


def document_hash(document: dict) -> str:
    """The content hash kubectl sees in serverRelativeURL (and as the ETag)."""
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def group_version_path(group_version: str) -> str:
    """'v1' -> 'api/v1', 'apps/v1' -> 'apis/apps/v1'; already-prefixed paths are kept."""
    gv = group_version.strip("/")
    if gv.startswith(("api/", "apis/")):
        return gv
    return f"apis/{gv}" if "/" in gv else f"api/{gv}"


def _gvr(info: ResourceInfo) -> tuple[str, str, str]:
    return info.group, info.version, info.plural


class OpenAPIDocuments:
    """The v2 and v3 documents of ``resources`` (api.kinds.ResourceInfo or alike: group,
    version, kind, plural, namespaced, subresources, group_version), built on first use and kept.

    Thread-safe for reads once built; building twice (a race) yields equal documents.
    """

    def __init__(self, resources: Iterable[ResourceInfo], version: str = SCHEMA_VERSION):
        self.resources = tuple(resources)
        self.version = version

    @functools.cached_property
    def _definitions(self) -> dict:
        definitions = load_definitions(self.version)
        custom = custom_definitions(self.resources)
        return {**definitions, **custom} if custom else definitions

    @functools.cached_property
    def _schema_names(self) -> dict[tuple[str, str, str], str]:
        """(group, version, plural) -> definition name, for the resources that have a schema."""
        names = {}
        for info in self.resources:
            name = definition_name(self._definitions, info)
            if name:
                names[_gvr(info)] = name
        return names

    def _roots(self, resources: Iterable[ResourceInfo]) -> list[str]:
        roots = []
        for info in resources:
            if _gvr(info) in self._schema_names:
                roots.append(self._schema_names[_gvr(info)])
                if "scale" in info.subresources:
                    roots.append(SCALE)
        return roots

    def _paths3(self, resources: Iterable[ResourceInfo]) -> dict:
        paths = {}
        for info in resources:
            if _gvr(info) in self._schema_names:
                paths.update(v3_paths(info, self._schema_names[_gvr(info)]))
        return paths

    @functools.cached_property
    def groups(self) -> dict[str, dict]:
        """'api/v1' / 'apis/apps/v1' -> that group-version's OpenAPI v3 document."""
        docs = {}
        for key in dict.fromkeys(group_version_path(r.group_version) for r in self.resources):
            members = [r for r in self.resources if group_version_path(r.group_version) == key]
            names = reachable(self._definitions, self._roots(members))
            docs[key] = {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": f"{self.version}-pkube"},
                "paths": self._paths3(members),
                "components": {"schemas": _convert_definitions(self._definitions, names, V3_PREFIX, True)},
            }
        return docs

    @functools.cached_property
    def hashes(self) -> dict[str, str]:
        return {key: document_hash(doc) for key, doc in self.groups.items()}

    @functools.cached_property
    def v3_root(self) -> dict:
        return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
                          for key, digest in self.hashes.items()}}

    def v3_group(self, group_version: str) -> Optional[dict]:
        return self.groups.get(group_version_path(group_version))

    @functools.cached_property
    def v2(self) -> dict:
        names = reachable(self._definitions, self._roots(self.resources))
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": f"{self.version}-pkube"},
            "paths": _v2_paths(self._paths3(self.resources)),
            "definitions": _convert_definitions(self._definitions, names, V2_PREFIX, False),
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        }

    @functools.cached_property
    def v2_hash(self) -> str:
        return document_hash(self.v2)


@functools.lru_cache(maxsize=1)
def default_documents() -> OpenAPIDocuments:
    """One OpenAPIDocuments for the built-in kinds, memoized (its documents build lazily)."""
    from pkube.api.kinds import BUILTIN_RESOURCES

    return OpenAPIDocuments(BUILTIN_RESOURCES)


def openapi_v2(documents: Optional[OpenAPIDocuments] = None) -> dict:
    """The Swagger 2.0 document (JSON form) of the served kinds. Do not mutate it."""
    return (documents or default_documents()).v2


def openapi_v3_root(documents: Optional[OpenAPIDocuments] = None) -> dict:
    """The /openapi/v3 discovery document: each group-version's serverRelativeURL with its hash."""
    return (documents or default_documents()).v3_root


def openapi_v3_group(group_version: str, documents: Optional[OpenAPIDocuments] = None) -> Optional[dict]:
    """The OpenAPI v3 document of one group-version ('v1', 'apps/v1', 'api/v1' or
    'apis/apps/v1'); None when we serve no such group-version. Do not mutate it."""
    return (documents or default_documents()).v3_group(group_version)


def openapi_v3_etag(group_version: str, documents: Optional[OpenAPIDocuments] = None) -> Optional[str]:
    """The quoted ETag of one group-version's v3 document (None when not served)."""
    digest = (documents or default_documents()).hashes.get(group_version_path(group_version))
    return f'"{digest}"' if digest else None


def openapi_v3_headers(group_version: str, requested_hash: Optional[str] = None,
                       documents: Optional[OpenAPIDocuments] = None) -> dict:
    """Response headers for one group-version's v3 document, as Kubernetes sends them.

    Always an ETag (answer 304 when it equals If-None-Match); when the request
    names the current ``?hash=``, the document can never change under that URL,
    so it is ``public, immutable`` (kubectl caches it on disk); otherwise
    ``no-cache, private``. Empty when the group-version is not served.
    """
    etag = openapi_v3_etag(group_version, documents)
    if etag is None:
        return {}
    fresh = requested_hash is not None and f'"{requested_hash}"' == etag
    return {"ETag": etag, "Cache-Control": "public, immutable" if fresh else "no-cache, private"}
