"""How each field of an object merges under server-side apply, read from its schema.

A ``FieldType`` is one node of structured-merge-diff's type model, built lazily from an
OpenAPI schema and cached for the schema's lifetime:

- ``SCALAR``: a leaf (strings, numbers, booleans, int-or-string, quantities, times);
- ``STRUCT``: an object with ``properties``; ``MAP``: an object with ``additionalProperties``
  (labels, annotations); either is ``atomic`` under ``x-kubernetes-map-type: atomic``;
- ``LIST``: ``relation`` is ``"atomic"``, ``"set"`` or ``"map"`` (with ``keys``), from
  ``x-kubernetes-list-type`` / ``-list-map-keys``, else from the strategic-merge metadata
  (``x-kubernetes-patch-strategy: merge`` with a merge key is a map list keyed by it, without
  one a set), else atomic — as Kubernetes' own schema conversion does;
- ``UNTYPED``: no schema (preserve-unknown-fields, RawExtension): objects are granular maps
  of untyped values, lists are atomic.

``TypeCatalog`` hands out the root of a built-in kind (the schemas kubernetes-validate ships)
or of a custom resource (its CRD's structural schema, with the built-in ObjectMeta grafted on
``metadata``). Nothing here is a module-level cache: the catalog owns its caches.
"""

from __future__ import annotations

from typing import Optional

from pkube.api.fieldpath import index_element, key_element, value_element
from pkube.api.schemas import SchemaNotFound, SchemaSet, shared_schema_set

SCALAR, STRUCT, MAP, LIST, UNTYPED = "scalar", "struct", "map", "list", "untyped"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_ROOT_SCALARS = ("apiVersion", "kind")


class FieldType:
    """One schema node; ``child(name)`` and ``item`` are resolved on first use and kept."""

    __slots__ = ("kind", "atomic", "leaf", "relation", "keys", "key_defaults", "required",
                 "_catalog", "_schema", "_fields", "_item", "_overrides")

    def __init__(self, catalog: "TypeCatalog", schema: Optional[dict]):
        self._catalog, self._schema = catalog, schema
        self._fields: dict[str, tuple["FieldType", bool]] = {}
        self._item: Optional[FieldType] = None
        self._overrides: dict[str, "FieldType"] = {}
        self.kind, self.atomic, self.relation = _classify(schema)
        self.leaf = self.kind == SCALAR or self.atomic   # a value of this type is one field
        self.keys: tuple = ()
        self.key_defaults: dict = {}
        self.required = frozenset((schema or {}).get("required") or ())
        if self.kind == LIST and self.relation == "map":
            self.keys = tuple(schema.get("x-kubernetes-list-map-keys")
                              or [schema.get("x-kubernetes-patch-merge-key")])
            self.key_defaults = self._key_defaults()

    def child(self, name: str) -> tuple["FieldType", bool]:
        """The type of field ``name`` and whether the schema declares it (a struct field)."""
        found = self._fields.get(name)
        if found is None:
            found = self._fields[name] = self._resolve_child(name)
        return found

    def _resolve_child(self, name: str) -> tuple["FieldType", bool]:
        if name in self._overrides:
            return self._overrides[name], True
        schema = self._schema or {}
        declared = (schema.get("properties") or {}).get(name)
        if declared is not None:
            return self._catalog.node(declared), True
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return self._catalog.node(extra), False
        return self._catalog.untyped, False

    @property
    def item(self) -> "FieldType":
        """The type of a list's items."""
        if self._item is None:
            items = (self._schema or {}).get("items")
            self._item = self._catalog.node(items) if isinstance(items, dict) else self._catalog.untyped
        return self._item

    def element(self, item, index: int) -> str:
        """The path element of ``item`` (the ``index``-th) in this list."""
        if self.relation == "map" and isinstance(item, dict):
            return key_element({k: item.get(k, self.key_defaults.get(k)) for k in self.keys
                                if k in item or k in self.key_defaults})
        if self.relation == "set":
            return value_element(item)
        return index_element(index)

    def kind_of(self, value) -> str:
        """This node's kind for ``value``; an untyped node takes the value's own shape."""
        if self.kind != UNTYPED:
            return self.kind
        if isinstance(value, dict):
            return MAP
        return SCALAR

    def _key_defaults(self) -> dict:
        properties = (self._catalog.resolve(self._schema.get("items")) or {}).get("properties") or {}
        defaults = {}
        for key in self.keys:
            field = self._catalog.resolve(properties.get(key)) or {}
            if "default" in field:
                defaults[key] = field["default"]
            elif key == "protocol" and "TCP" in str(field.get("description", "")):
                defaults[key] = "TCP"    # Kubernetes' OpenAPI declares it; the shipped schema only says so
        return defaults


def _types(schema: dict) -> set:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind) - {"null"}
    return {kind} if kind else set()


def _classify(schema: Optional[dict]) -> tuple[str, bool, str]:
    """(kind, atomic, list relation) of a resolved schema."""
    if not schema:
        return UNTYPED, False, ""
    types = _types(schema)
    if schema.get("x-kubernetes-int-or-string") or "oneOf" in schema or "anyOf" in schema:
        return SCALAR, False, ""
    if "array" in types:
        return LIST, _list_relation(schema) == "atomic", _list_relation(schema)
    atomic_map = schema.get("x-kubernetes-map-type") == "atomic"
    if "properties" in schema:
        return STRUCT, atomic_map, ""
    if "object" in types or isinstance(schema.get("additionalProperties"), dict):
        if isinstance(schema.get("additionalProperties"), dict):
            return MAP, atomic_map, ""
        return UNTYPED, atomic_map, ""
    if types:
        return SCALAR, False, ""
    return UNTYPED, False, ""


def _list_relation(schema: dict) -> str:
    declared = schema.get("x-kubernetes-list-type")
    if declared in ("atomic", "set"):
        return declared
    if declared == "map":
        return "map" if schema.get("x-kubernetes-list-map-keys") else "atomic"
    if "merge" in str(schema.get("x-kubernetes-patch-strategy", "")).split(","):
        return "map" if schema.get("x-kubernetes-patch-merge-key") else "set"
    return "atomic"


class TypeCatalog:
    """FieldType roots for built-in kinds and custom resources, built once per schema."""

    def __init__(self, schemas: Optional[SchemaSet] = None):
        self.schemas = schemas or shared_schema_set()
        self._nodes: dict[int, FieldType] = {}
        self._keep: list = []                      # schemas whose id() keys _nodes stay alive
        self._roots: dict[tuple, FieldType] = {}
        self.untyped = FieldType(self, None)

    def resolve(self, schema: Optional[dict]) -> Optional[dict]:
        return self.schemas.resolve(schema)

    def node(self, schema: dict) -> FieldType:
        """The FieldType of a (possibly ``$ref``) schema, shared by every use of it."""
        resolved = self.resolve(schema) or {}
        found = self._nodes.get(id(resolved))
        if found is None:
            self._keep.append(resolved)
            found = self._nodes[id(resolved)] = FieldType(self, resolved)
        return found

    def builtin(self, api_version: str, kind: str) -> FieldType:
        """The root of a built-in kind; untyped when no schema is shipped for it."""
        key = (api_version, kind)
        if key not in self._roots:
            try:
                self._roots[key] = self.node(self.schemas.kind_schema(api_version, kind))
            except SchemaNotFound:
                self._roots[key] = self._with_meta(FieldType(self, None))
        return self._roots[key]

    def custom(self, schema: Optional[dict]) -> FieldType:
        """The root of a custom resource from its structural schema (None: untyped), with
        Kubernetes' ObjectMeta on ``metadata``."""
        key = ("custom", id(schema))
        if key not in self._roots:
            self._keep.append(schema)
            self._roots[key] = self._with_meta(FieldType(self, schema) if schema else FieldType(self, None))
        return self._roots[key]

    def _with_meta(self, root: FieldType) -> FieldType:
        root._overrides["metadata"] = self.node({"$ref": "#/$defs/" + OBJECT_META})
        for name in _ROOT_SCALARS:
            root._overrides[name] = FieldType(self, {"type": "string"})
        if root.kind == UNTYPED:
            root.kind, root.leaf = STRUCT, False
        return root
