"""CustomResourceDefinitions (apiextensions.k8s.io/v1): their rules and what they serve.

- ``crd_causes(crd, old)``: the checks Kubernetes' apiextensions-apiserver makes on a CRD
  beyond its OpenAPI shape (names, group, scope, versions, a structural schema, printer
  columns, subresources), worded as Kubernetes words them. The shape itself is checked by
  pkube/api/validation.py with Kubernetes' own CRD schema.
- ``structural_causes(schema, path)``: why a schema is not structural (Kubernetes'
  ``ValidateStructural`` and the v1 schema rules).
- ``name_conflicts(crd, taken)``: the NamesAccepted decision against the names already
  served (built-in resources and older CRDs).
- ``custom_resources(crd)``: the ``ResourceInfo`` of each served version, carrying a
  ``CustomResource`` (schema, printer columns, scale paths) in ``info.custom``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from pkube.api import causes, names
from pkube.api.crschema import StructuralSchema
from pkube.api.jsonvalue import deep_copy
from pkube.api.kinds import ALL_VERBS, CRD_GROUP, ResourceInfo, version_priority

GROUP = CRD_GROUP
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
PROTECTED_GROUP_SUFFIXES = (".k8s.io", ".kubernetes.io")
SCOPES = ("Cluster", "Namespaced")
COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
CONVERSION_STRATEGIES = ("None",)
STATUS_VERBS = ("get", "patch", "update")
MAX_SELECTABLE_FIELDS = 8
# Keys a schema may not use at all (Kubernetes' v1 rules), with their messages.
FORBIDDEN_SCHEMA_KEYS = {
    "$ref": "$ref is not supported", "id": "id is not supported",
    "additionalItems": "additionalItems is not supported",
    "patternProperties": "patternProperties is not supported",
    "definitions": "definitions is not supported", "dependencies": "dependencies is not supported",
}
# Keys a value validation under allOf/anyOf/oneOf/not may not use, with their messages.
NESTED_FORBIDDEN = {
    "type": "must be empty to be structural",
    "additionalProperties": "must be undefined to be structural",
    "default": "must be undefined to be structural",
    "title": "must be empty to be structural",
    "description": "must be empty to be structural",
    "nullable": "must be false to be structural",
    "x-kubernetes-preserve-unknown-fields": "must be false to be structural",
    "x-kubernetes-embedded-resource": "must be false to be structural",
    "x-kubernetes-int-or-string": "must be false to be structural",
    "x-kubernetes-list-map-keys": "must be empty to be structural",
    "x-kubernetes-list-type": "must be undefined to be structural",
}
ROOT_LEVEL, ITEM_LEVEL, FIELD_LEVEL = "root", "item", "field"
EMPTY_TYPE = {ROOT_LEVEL: "must not be empty at the root",
              ITEM_LEVEL: "must not be empty for specified array items",
              FIELD_LEVEL: "must not be empty for specified object fields"}


@dataclass(frozen=True)
class PrinterColumn:
    """One additionalPrinterColumn: ``json_path`` is a simple path such as ``.spec.replicas``."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ScalePaths:
    """The scale subresource's paths (".spec.replicas", ".status.replicas", ".status.selector")."""

    spec_replicas: str
    status_replicas: str
    label_selector: str = ""


@dataclass(frozen=True)
class CustomResource:
    """What one served version of a CRD adds to a ResourceInfo. ``stored_versions`` are
    the versions objects may be stored in (status.storedVersions)."""

    crd_name: str
    storage_version: str
    stored_versions: tuple[str, ...] = ()
    schema: Optional[StructuralSchema] = field(default=None, compare=False)
    openapi_schema: dict = field(default_factory=dict, compare=False)
    columns: tuple[PrinterColumn, ...] = ()
    scale: Optional[ScalePaths] = None
    terminating: bool = False
    selectable_fields: tuple[str, ...] = ()  # field-selector paths: "spec.color"
    deprecation: str = ""  # the Warning every response of a deprecated version carries


# ---------------------------------------------------------------- accessors

def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def spec_of(crd: dict) -> dict:
    return _dict(crd.get("spec"))


def names_of(crd: dict) -> dict:
    return _dict(spec_of(crd).get("names"))


def versions_of(crd: dict) -> list[dict]:
    return [v for v in _list(spec_of(crd).get("versions")) if isinstance(v, dict)]


def storage_version(crd: dict) -> str:
    return next((v.get("name", "") for v in versions_of(crd) if v.get("storage")), "")


def has_condition(crd: dict, kind: str) -> bool:
    """True when the CRD's status holds condition ``kind`` with status True."""
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in _list(_dict(crd.get("status")).get("conditions")) if isinstance(c, dict))


# ---------------------------------------------------------------- validation of a CRD

def crd_causes(crd: dict, old: Optional[dict] = None) -> list[dict]:
    """Everything wrong with ``crd`` (and with the change from ``old``), as StatusCauses."""
    spec = spec_of(crd)
    found = _metadata_causes(crd) + _group_causes(crd) + _scope_causes(spec)
    found += _versions_causes(spec) + _names_causes(names_of(crd))
    found += _conversion_causes(spec)
    if spec.get("preserveUnknownFields") is True:
        found.append(causes.invalid("spec.preserveUnknownFields", True, "must be false"))
    if old is not None:
        found += _update_causes(crd, old)
    return found


def _metadata_causes(crd: dict) -> list[dict]:
    md = _dict(crd.get("metadata"))
    spec, plural = spec_of(crd), names_of(crd).get("plural", "")
    name = md.get("name") or ""
    if name and name != f"{plural}.{spec.get('group', '')}":
        return [causes.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')]
    return []


def _group_causes(crd: dict) -> list[dict]:
    group = spec_of(crd).get("group")
    if not group:
        return [causes.required("spec.group")]
    if not isinstance(group, str):
        return []  # the OpenAPI shape check reports it
    problems = names.dns1123_subdomain(group)
    if problems:
        return [causes.invalid("spec.group", group, ",".join(problems))]
    if "." not in group:
        return [causes.invalid("spec.group", group, "should be a domain with at least one dot")]
    return _approval_causes(crd, group)


def is_protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith(PROTECTED_GROUP_SUFFIXES)


def _approval_causes(crd: dict, group: str) -> list[dict]:
    """Groups under k8s.io / kubernetes.io need the api-approved.kubernetes.io annotation."""
    if not is_protected_group(group):
        return []
    annotations = _dict(_dict(crd.get("metadata")).get("annotations"))
    if annotations.get(APPROVAL_ANNOTATION):
        return []
    return [causes.required(f"metadata.annotations[{APPROVAL_ANNOTATION}]",
                            f'protected groups must have approval annotation "{APPROVAL_ANNOTATION}", '
                            "see https://github.com/kubernetes/enhancements/pull/1111")]


def _scope_causes(spec: dict) -> list[dict]:
    scope = spec.get("scope")
    if not scope:
        return [causes.required("spec.scope")]
    if scope not in SCOPES:
        return [causes.not_supported("spec.scope", scope, SCOPES)]
    return []


def _versions_causes(spec: dict) -> list[dict]:
    versions = _list(spec.get("versions"))
    found: list[dict] = []
    for index, version in enumerate(versions):
        if isinstance(version, dict):
            found += _version_causes(version, f"spec.versions[{index}]")
    version_names = [v.get("name") for v in versions if isinstance(v, dict)]
    if len(set(map(str, version_names))) != len(version_names):
        found.append(causes.invalid("spec.versions", versions, "must contain unique version names"))
    if sum(bool(_dict(v).get("storage")) for v in versions) != 1:
        found.append(causes.invalid("spec.versions", versions,
                                    "must have exactly one version marked as storage version"))
    return found


def _version_causes(version: dict, path: str) -> list[dict]:
    found = []
    name = version.get("name")
    if not name:
        found.append(causes.required(f"{path}.name"))
    elif isinstance(name, str) and names.dns1035_label(name):
        found.append(causes.invalid(f"{path}.name", name, ",".join(names.dns1035_label(name))))
    subresources = _dict(version.get("subresources"))
    found += _schema_causes(version, path, "status" in subresources)
    found += _scale_causes(_dict(subresources.get("scale")), f"{path}.subresources") \
        if "scale" in subresources else []
    for index, column in enumerate(_list(version.get("additionalPrinterColumns"))):
        found += _column_causes(_dict(column), f"{path}.additionalPrinterColumns[{index}]")
    schema = _dict(_dict(version.get("schema")).get("openAPIV3Schema"))
    return found + _selectable_causes(_list(version.get("selectableFields")), schema, f"{path}.selectableFields")


def _selectable_causes(fields: list, schema: dict, path: str) -> list[dict]:
    """selectableFields: at most 8, distinct, each a simple path to a string, integer or
    boolean field of the schema."""
    found = []
    if len(fields) > MAX_SELECTABLE_FIELDS:
        found.append(causes.make("FieldValueTooMany", path, f"Too many: {len(fields)}: must have at most "
                                                            f"{MAX_SELECTABLE_FIELDS} items"))
    seen = set()
    for index, entry in enumerate(fields):
        where = f"{path}[{index}].jsonPath"
        json_path = _dict(entry).get("jsonPath")
        if not json_path:
            found.append(causes.required(where))
            continue
        kind = _type_at(schema, json_path) if isinstance(json_path, str) else None
        if json_path in seen:
            found.append(causes.duplicate(where, json_path))
        elif kind is None:
            found.append(causes.invalid(where, json_path, "is an invalid path: does not refer to a valid field"))
        elif kind not in ("string", "integer", "boolean"):
            found.append(causes.invalid(where, json_path, "selectable field path must refer to a string, "
                                                          "number, boolean or enum field"))
        seen.add(json_path)
    return found


def _type_at(schema: dict, json_path: str) -> Optional[str]:
    """The type of the field a simple path (``.spec.color``) names in ``schema``; None if none."""
    if not json_path.startswith("."):
        return None
    node = schema
    for step in json_path[1:].split("."):
        node = _dict(_dict(node.get("properties")).get(step))
        if not node:
            return None
    return "integer" if node.get("type") == "number" else node.get("type") or None


def _schema_causes(version: dict, path: str, status_enabled: bool) -> list[dict]:
    schema = _dict(version.get("schema")).get("openAPIV3Schema")
    where = f"{path}.schema.openAPIV3Schema"
    if not isinstance(schema, dict):
        return [causes.required(where, "schemas are required")]
    found = _v3_schema_causes(schema, where)
    found += structural_causes(schema, where)
    if status_enabled and schema.get("type") not in (None, "object"):
        found.append(causes.invalid(f"{where}.type", schema.get("type"),
                                    'only "object" is allowed as the type at the root of the schema if '
                                    "the status subresource is enabled"))
    if not found:
        found += _default_causes(schema, where)
    return found


def _scale_causes(scale: dict, path: str) -> list[dict]:
    found = []
    for key, prefix in (("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")):
        value = scale.get(key)
        if not value:
            found.append(causes.required(f"{path}.scale.{key}"))
        elif not isinstance(value, str) or not value.startswith("."):
            found.append(causes.invalid(f"{path}.scale.{key}", value, "must be a simple json path starting with ."))
        elif not value.startswith(prefix):
            found.append(causes.invalid(f"{path}.scale.{key}", value,
                                        f"should be a json path under {prefix.rstrip('.')}"))
    selector = scale.get("labelSelectorPath")
    if selector and (not isinstance(selector, str) or not selector.startswith(".status.")):
        found.append(causes.invalid(f"{path}.scale.labelSelectorPath", selector,
                                    "should be a json path under .status"))
    return found


def _column_causes(column: dict, path: str) -> list[dict]:
    found = []
    if not column.get("name"):
        found.append(causes.required(f"{path}.name"))
    kind = column.get("type")
    types = ",".join(COLUMN_TYPES)
    if not kind:
        found.append(causes.required(f"{path}.type", f"must be one of {types}"))
    elif kind not in COLUMN_TYPES:
        found.append(causes.invalid(f"{path}.type", kind, f"must be one of {types}"))
    fmt = column.get("format")
    if fmt and fmt not in COLUMN_FORMATS:
        found.append(causes.invalid(f"{path}.format", fmt, f"must be one of {','.join(COLUMN_FORMATS)}"))
    json_path = column.get("jsonPath")
    if not json_path:
        found.append(causes.required(f"{path}.jsonPath"))
    elif not isinstance(json_path, str) or not json_path.startswith("."):
        found.append(causes.invalid(f"{path}.jsonPath", json_path, "must be a simple json path starting with ."))
    return found


def default_crd(crd: dict) -> None:
    """Fill a CRD's name defaults in place (apiextensions v1 defaults.go
    SetDefaults_CustomResourceDefinitionSpec): singular is the lower-cased kind, listKind
    kind + "List". Leaves a malformed CRD to validation."""
    crd_names = names_of(crd)
    kind = crd_names.get("kind")
    if not isinstance(kind, str) or not kind or crd_names is not spec_of(crd).get("names"):
        return
    if not crd_names.get("singular"):
        crd_names["singular"] = kind.lower()
    if not crd_names.get("listKind"):
        crd_names["listKind"] = kind + "List"


def _names_causes(crd_names: dict) -> list[dict]:
    found = [causes.required(f"spec.names.{key}") for key in ("plural", "singular", "kind", "listKind")
             if not crd_names.get(key)]
    for key in ("plural", "singular"):
        value = crd_names.get(key)
        if isinstance(value, str) and value and names.dns1035_label(value):
            found.append(causes.invalid(f"spec.names.{key}", value, ",".join(names.dns1035_label(value))))
    for key in ("kind", "listKind"):
        value = crd_names.get(key)
        if isinstance(value, str) and value and names.dns1035_label(value.lower()):
            found.append(causes.invalid(f"spec.names.{key}", value, "may have mixed case, but should otherwise "
                                        "match: " + ",".join(names.dns1035_label(value.lower()))))
    for key in ("shortNames", "categories"):
        for index, value in enumerate(_list(crd_names.get(key))):
            if isinstance(value, str) and names.dns1035_label(value):
                found.append(causes.invalid(f"spec.names.{key}[{index}]", value,
                                            ",".join(names.dns1035_label(value))))
    if crd_names.get("kind") and crd_names.get("kind") == crd_names.get("listKind"):
        found.append(causes.invalid("spec.names.listKind", crd_names["listKind"],
                                    "kind and listKind may not be the same"))
    return found


def _conversion_causes(spec: dict) -> list[dict]:
    strategy = _dict(spec.get("conversion")).get("strategy")
    if strategy is None or strategy in CONVERSION_STRATEGIES:
        return []
    return [causes.not_supported("spec.conversion.strategy", strategy, CONVERSION_STRATEGIES)]


def _update_causes(crd: dict, old: dict) -> list[dict]:
    found = []
    pairs = [("spec.group", spec_of(crd).get("group"), spec_of(old).get("group")),
             ("spec.names.plural", names_of(crd).get("plural"), names_of(old).get("plural"))]
    if has_condition(old, "Established"):
        pairs += [("spec.scope", spec_of(crd).get("scope"), spec_of(old).get("scope")),
                  ("spec.names.kind", names_of(crd).get("kind"), names_of(old).get("kind"))]
    for where, new_value, old_value in pairs:
        if new_value != old_value:
            found.append(causes.invalid(where, new_value, "field is immutable"))
    return found


def crd_warnings(crd: dict) -> list[str]:
    """Warnings for the client: the parts of ``crd`` this apiserver accepts but does not
    enforce (CEL rules in x-kubernetes-validations)."""
    found = []
    for index, version in enumerate(versions_of(crd)):
        schema = _dict(version.get("schema")).get("openAPIV3Schema")
        where = f"spec.versions[{index}].schema.openAPIV3Schema"
        found += [f"{path}.x-kubernetes-validations: CEL rules are not enforced by this apiserver"
                  for path in _paths_with(schema, "x-kubernetes-validations", where)]
    return found


def _paths_with(schema, key: str, path: str) -> list[str]:
    if not isinstance(schema, dict):
        return []
    found = [path] if schema.get(key) else []
    for sub_path, sub in _children(schema, path):
        found += _paths_with(sub, key, sub_path)
    return found


# ---------------------------------------------------------------- structural schemas

def _v3_schema_causes(schema: dict, path: str) -> list[dict]:
    """Kubernetes' per-node OpenAPI v3 rules (no $ref, no null type, no uniqueItems, ...)."""
    found = []
    for key, message in FORBIDDEN_SCHEMA_KEYS.items():
        if key in schema:
            found.append(causes.forbidden(f"{path}.{key}", message))
    if schema.get("type") == "null":
        found.append(causes.forbidden(f"{path}.type", "type cannot be set to null"))
    if isinstance(schema.get("items"), list):
        found.append(causes.forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if schema.get("uniqueItems") is True:
        found.append(causes.forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the "
                                                             "runtime complexity becomes quadratic"))
    extra = schema.get("additionalProperties")
    if extra is not None and schema.get("properties") and (extra is False or isinstance(extra, dict)):
        found.append(causes.forbidden(f"{path}.additionalProperties",
                                      "additionalProperties and properties are mutual exclusive"))
    for sub_path, sub in _children(schema, path):
        found += _v3_schema_causes(sub, sub_path)
    return found


def _children(schema: dict, path: str) -> Iterable[tuple[str, dict]]:
    """Every sub-schema with its path: properties, items, additionalProperties, junctors."""
    for name, sub in _dict(schema.get("properties")).items():
        if isinstance(sub, dict):
            yield f"{path}.properties[{name}]", sub
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield f"{path}.{key}", schema[key]
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(_list(schema.get(key))):
            if isinstance(sub, dict):
                yield f"{path}.{key}[{index}]", sub


def structural_causes(schema: dict, path: str) -> list[dict]:
    """Why ``schema`` is not structural (empty when it is), sorted as Kubernetes sorts them."""
    found = _invariants(schema, ROOT_LEVEL, path) + _completeness(schema, path)
    return sorted(found, key=lambda c: f"{c['field']}: {c['message']}")


def _completeness(schema: dict, path: str) -> list[dict]:
    """Every property or items a value validation (allOf/anyOf/oneOf/not) speaks of is also
    specified structurally, at every structural node."""
    found = []
    for key in ("allOf", "anyOf", "oneOf"):
        for index, branch in enumerate(_list(schema.get(key))):
            found += _nested_completeness(_dict(branch), schema, path, f"{path}.{key}[{index}]")
    if isinstance(schema.get("not"), dict):
        found += _nested_completeness(schema["not"], schema, path, f"{path}.not")
    for name, sub in _dict(schema.get("properties")).items():
        if isinstance(sub, dict):
            found += _completeness(sub, f"{path}.properties[{name}]")
    if isinstance(schema.get("items"), dict):
        found += _completeness(schema["items"], f"{path}.items")
    return found


def _nested_completeness(branch: dict, structural: Optional[dict], s_path: str, v_path: str) -> list[dict]:
    if structural is None:
        return [causes.required(s_path, f"because it is defined in {v_path}")]
    found = []
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(_list(branch.get(key))):
            found += _nested_completeness(_dict(sub), structural, s_path, f"{v_path}.{key}[{index}]")
    if isinstance(branch.get("not"), dict):
        found += _nested_completeness(branch["not"], structural, s_path, f"{v_path}.not")
    if isinstance(branch.get("items"), dict):
        items = structural.get("items") if isinstance(structural.get("items"), dict) else None
        found += _nested_completeness(branch["items"], items, f"{s_path}.items", f"{v_path}.items")
    properties = _dict(structural.get("properties"))
    for name, sub in _dict(branch.get("properties")).items():
        target = properties.get(name)
        found += _nested_completeness(_dict(sub), target if isinstance(target, dict) else None,
                                      f"{s_path}.properties[{name}]", f"{v_path}.properties[{name}]")
    return found


def _invariants(schema: dict, level: str, path: str) -> list[dict]:
    found = []
    kind = schema.get("type") or ""
    if kind == "array" and not isinstance(schema.get("items"), dict):
        found.append(causes.required(f"{path}.items", "must be specified"))
    if isinstance(schema.get("items"), dict):
        found += _invariants(schema["items"], ITEM_LEVEL, f"{path}.items")
    for name, sub in _dict(schema.get("properties")).items():
        if isinstance(sub, dict):
            found += _invariants(sub, FIELD_LEVEL, f"{path}.properties[{name}]")
    found += _additional_properties(schema, level, path)
    found += _extension_causes(schema, path)
    found += _junctor_causes(schema, path)
    found += _type_causes(schema, kind, level, path)
    found += _metadata_schema_causes(schema, level, path)
    return found


def _additional_properties(schema: dict, level: str, path: str) -> list[dict]:
    extra = schema.get("additionalProperties")
    if extra is None:
        return []
    found = []
    if level == ROOT_LEVEL:
        found.append(causes.forbidden(f"{path}.additionalProperties", "must not be used at the root"))
    if isinstance(extra, dict):
        found += _invariants(extra, FIELD_LEVEL, f"{path}.additionalProperties")
    return found


def _extension_causes(schema: dict, path: str) -> list[dict]:
    found = []
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if int_or_string and schema.get("x-kubernetes-preserve-unknown-fields") is True:
        found.append(causes.invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                                    "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and schema.get("x-kubernetes-embedded-resource") is True:
        found.append(causes.invalid(f"{path}.x-kubernetes-embedded-resource", True,
                                    "must be false if x-kubernetes-int-or-string is true"))
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        found.append(causes.invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False,
                                    "must be true or undefined"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            found.append(causes.invalid(f"{path}.pattern", pattern,
                                        f"must be a valid regular expression, but isn't: {exc}"))
    return found


def _is_int_or_string_any_of(options) -> bool:
    return options == [{"type": "integer"}, {"type": "string"}]


def _junctor_causes(schema: dict, path: str) -> list[dict]:
    found = []
    for key in ("anyOf", "allOf", "oneOf"):
        for index, sub in enumerate(_list(schema.get(key))):
            if not isinstance(sub, dict):
                continue
            if key == "anyOf" and _is_int_or_string_any_of(schema.get("anyOf")):
                continue
            if key == "allOf" and index == 0 and _is_int_or_string_any_of(sub.get("anyOf")):
                sub = {k: v for k, v in sub.items() if k != "anyOf"}
            found += _nested_causes(sub, f"{path}.{key}[{index}]")
    if isinstance(schema.get("not"), dict):
        found += _nested_causes(schema["not"], f"{path}.not")
    return found


def _nested_causes(schema: dict, path: str) -> list[dict]:
    """A value validation under a junctor: only value checks, no types or defaults."""
    found = [causes.forbidden(f"{path}.{key}", message) for key, message in NESTED_FORBIDDEN.items()
             if schema.get(key) not in (None, False, "", [])]
    if "metadata" in _dict(schema.get("properties")):
        found.append(causes.forbidden(f"{path}.properties[metadata]", "must not be specified in a nested context"))
    if isinstance(schema.get("items"), dict):
        found += _nested_causes(schema["items"], f"{path}.items")
    for name, sub in _dict(schema.get("properties")).items():
        if isinstance(sub, dict):
            found += _nested_causes(sub, f"{path}.properties[{name}]")
    return found + _junctor_causes(schema, path)


def _type_causes(schema: dict, kind: str, level: str, path: str) -> list[dict]:
    found = []
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    if embedded and kind != "object":
        message = "must be object if x-kubernetes-embedded-resource is true"
        found.append(causes.invalid(f"{path}.type", kind, message) if kind
                     else causes.required(f"{path}.type", message))
    elif not kind and not schema.get("x-kubernetes-int-or-string") and not schema.get(
            "x-kubernetes-preserve-unknown-fields"):
        found.append(causes.required(f"{path}.type", EMPTY_TYPE[level]))
    if embedded and schema.get("additionalProperties") is not None:
        found.append(causes.forbidden(f"{path}.additionalProperties",
                                      "must not be used if x-kubernetes-embedded-resource is set"))
    if level == ROOT_LEVEL and kind and kind != "object":
        found.append(causes.invalid(f"{path}.type", kind, "must be object at the root"))
    if embedded and not schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        found.append(causes.required(f"{path}.properties", "must not be empty if x-kubernetes-embedded-resource "
                                                           "is true without x-kubernetes-preserve-unknown-fields"))
    return found


def _metadata_schema_causes(schema: dict, level: str, path: str) -> list[dict]:
    """At the root (or an embedded resource) kind/apiVersion are strings, metadata an object
    that restricts at most name and generateName."""
    properties = _dict(schema.get("properties"))
    found = []
    if level == ROOT_LEVEL or schema.get("x-kubernetes-embedded-resource"):
        for key, expected in (("kind", "string"), ("apiVersion", "string"), ("metadata", "object")):
            sub = properties.get(key)
            if isinstance(sub, dict) and sub.get("type") != expected:
                found.append(causes.invalid(f"{path}.properties[{key}].type", sub.get("type", ""),
                                            f"must be {expected}"))
    metadata = properties.get("metadata")
    if level == ROOT_LEVEL and isinstance(metadata, dict):
        rest = {k: v for k, v in metadata.items() if k not in ("type", "default")}
        if set(_dict(rest.pop("properties", {}))) - {"name", "generateName"} or rest:
            found.append(causes.forbidden(f"{path}.properties[metadata]",
                                          "must not specify anything other than name and generateName, "
                                          "but metadata is implicitly specified"))
    return found


def _default_causes(schema: dict, path: str) -> list[dict]:
    """Every ``default`` must itself be valid against its schema and already pruned."""
    found = []
    if schema.get("default") is not None:
        wrapper = StructuralSchema({"type": "object", "properties": {"default": schema}})
        value = {"default": deep_copy(schema["default"])}
        for problem in wrapper.validate(value):
            found.append({**problem, "field": path + "." + problem["field"]})
        for pruned in wrapper.prune(value):
            found.append(causes.make(causes.INVALID, f"{path}.{pruned}", "Forbidden: unknown field"))
    for sub_path, sub in _children(schema, path):
        if not re.search(r"\.(allOf|anyOf|oneOf)\[\d+\]$|\.not$", sub_path):
            found += _default_causes(sub, sub_path)
    return found


# ---------------------------------------------------------------- names: NamesAccepted

def names_taken(info: ResourceInfo) -> dict[str, str]:
    """The names a served resource holds in its group: name -> what it is (for messages)."""
    held = {info.plural: "plural", info.singular: "singular"}
    held.update({short: "shortNames" for short in info.short_names})
    return held


def name_conflicts(crd: dict, served: Iterable[ResourceInfo]) -> Optional[tuple[str, str]]:
    """(reason, message) of the first names conflict of ``crd`` with ``served`` resources,
    or None when its names are free. A clash is: the same plural, singular, short name,
    kind or list kind in the same group, or a short name that is a built-in's name."""
    crd_names, group = names_of(crd), spec_of(crd).get("group", "")
    for info in served:
        if info.custom is not None and info.custom.crd_name == _dict(crd.get("metadata")).get("name"):
            continue
        same_group = info.group == group
        taken = {info.plural, info.singular, *info.short_names}
        if same_group and crd_names.get("plural") in taken:
            return "PluralConflict", f'"{crd_names["plural"]}" is already in use'
        if same_group and crd_names.get("singular") in taken:
            return "SingularConflict", f'"{crd_names["singular"]}" is already in use'
        for short in _list(crd_names.get("shortNames")):
            if short in taken and (same_group or info.custom is None):
                return "ShortNamesConflict", f'"{short}" is already in use'
        if same_group and crd_names.get("kind") in (info.kind, info.list_kind):
            return "KindConflict", f'"{crd_names["kind"]}" is already in use'
        if same_group and crd_names.get("listKind") in (info.kind, info.list_kind):
            return "ListKindConflict", f'"{crd_names["listKind"]}" is already in use'
    return None


# ---------------------------------------------------------------- what a CRD serves

def custom_resources(crd: dict, served_only: bool = True) -> list[ResourceInfo]:
    """The ResourceInfo of each served version of an accepted ``crd`` (every version with
    ``served_only`` False), storage version first."""
    spec, crd_names = spec_of(crd), names_of(crd)
    group, plural = spec.get("group", ""), crd_names.get("plural", "")
    storage = storage_version(crd)
    terminating = bool(_dict(crd.get("metadata")).get("deletionTimestamp"))
    versions = sorted((v for v in versions_of(crd) if v.get("served") or not served_only),
                      key=lambda v: not v.get("storage"))
    infos = []
    for version in versions:
        subresources = _dict(version.get("subresources"))
        custom = CustomResource(
            crd_name=_dict(crd.get("metadata")).get("name", ""), storage_version=storage,
            stored_versions=tuple(_list(_dict(crd.get("status")).get("storedVersions"))),
            schema=_structural(_dict(version.get("schema")).get("openAPIV3Schema")),
            openapi_schema=_dict(_dict(version.get("schema")).get("openAPIV3Schema")),
            columns=_columns(version), scale=_scale(subresources.get("scale")), terminating=terminating,
            selectable_fields=tuple(_dict(f).get("jsonPath", "").lstrip(".")
                                    for f in _list(version.get("selectableFields"))),
            deprecation=deprecation_warning(crd, version))
        served = {name: STATUS_VERBS for name in ("status", "scale") if name in subresources}
        infos.append(ResourceInfo(
            group=group, version=version.get("name", ""), kind=crd_names.get("kind", ""), plural=plural,
            singular=crd_names.get("singular") or crd_names.get("kind", "").lower(),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(_list(crd_names.get("shortNames"))), categories=tuple(_list(crd_names.get("categories"))),
            subresources=served, verbs=ALL_VERBS, list_kind=crd_names.get("listKind", ""),
            storage_name=f"{group}/{plural}", custom=custom))
    return infos


def _structural(schema) -> Optional[StructuralSchema]:
    return StructuralSchema(schema) if isinstance(schema, dict) else None


def deprecation_warning(crd: dict, version: dict) -> str:
    """"" unless ``version`` is deprecated; then its deprecationWarning, or Kubernetes' default
    ("example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget", naming the
    preferred newer served version that is not deprecated)."""
    if not version.get("deprecated"):
        return ""
    if isinstance(version.get("deprecationWarning"), str):
        return version["deprecationWarning"]
    group, kind, name = spec_of(crd).get("group", ""), names_of(crd).get("kind", ""), version.get("name", "")
    message = f"{group}/{name} {kind} is deprecated"
    newer = sorted((v.get("name", "") for v in versions_of(crd) if v.get("served") and not v.get("deprecated")
                    and version_priority(v.get("name", "")) < version_priority(name)), key=version_priority)
    return message + (f"; use {group}/{newer[0]} {kind}" if newer else "")


def _columns(version: dict) -> tuple[PrinterColumn, ...]:
    columns = [_dict(c) for c in _list(version.get("additionalPrinterColumns"))]
    if not columns:
        return (PrinterColumn("Age", "date", ".metadata.creationTimestamp"),)
    return tuple(PrinterColumn(c.get("name", ""), c.get("type", "string"), c.get("jsonPath", ""),
                               c.get("description", ""), int(c.get("priority") or 0), c.get("format", ""))
                 for c in columns)


def _scale(scale) -> Optional[ScalePaths]:
    if not isinstance(scale, dict):
        return None
    return ScalePaths(scale.get("specReplicasPath", ""), scale.get("statusReplicasPath", ""),
                      scale.get("labelSelectorPath") or "")


def accepted_names(crd: dict) -> dict:
    """status.acceptedNames of an accepted CRD (its spec.names with the defaults filled)."""
    crd_names = names_of(crd)
    accepted = {"plural": crd_names.get("plural", ""), "kind": crd_names.get("kind", "")}
    for key in ("singular", "listKind"):
        if crd_names.get(key):
            accepted[key] = crd_names[key]
    for key in ("shortNames", "categories"):
        if crd_names.get(key):
            accepted[key] = list(crd_names[key])
    return accepted
