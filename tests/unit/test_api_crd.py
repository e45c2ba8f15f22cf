"""CRD rules (pkube/api/crd.py) and structural schemas at work (pkube/api/crschema.py): pure, no apiserver."""

from __future__ import annotations

import copy

import pytest

from pkube.api import crd as crds
from pkube.api.crschema import StructuralSchema
from pkube.api.kinds import BUILTIN_RESOURCES

SCHEMA = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "size": {"type": "string"}, "replicas": {"type": "integer", "default": 1}}}}}


def crd(**spec) -> dict:
    base = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": copy.deepcopy(SCHEMA)}}]}}
    base["spec"].update(spec)
    return base


def messages(found: list[dict]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in found]


def with_schema(schema: dict) -> dict:
    made = crd()
    made["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema
    return made


ROOT = "spec.versions[0].schema.openAPIV3Schema"


def test_a_good_crd_has_no_causes():
    assert crds.crd_causes(crd()) == []


@pytest.mark.parametrize("schema, expected", [
    ({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}},
     [f"{ROOT}.properties[spec].type: Required value: must not be empty for specified object fields"]),
    ({"properties": {"spec": {"type": "object"}}},
     [f"{ROOT}.type: Required value: must not be empty at the root"]),
    ({"type": "object", "properties": {"l": {"type": "array"}}},
     [f"{ROOT}.properties[l].items: Required value: must be specified"]),
    ({"type": "object", "properties": {"l": {"type": "array", "items": {}}}},
     [f"{ROOT}.properties[l].items.type: Required value: must not be empty for specified array items"]),
    ({"type": "string"}, [f"{ROOT}.type: Invalid value: \"string\": must be object at the root"]),
    ({"type": "object", "additionalProperties": {"type": "string"}},
     [f"{ROOT}.additionalProperties: Forbidden: must not be used at the root"]),
    ({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}},
     [f"{ROOT}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"]),
    ({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}},
     [f"{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, "
      "but metadata is implicitly specified"]),
    ({"type": "object", "properties": {"e": {"type": "object", "x-kubernetes-embedded-resource": True}}},
     [f"{ROOT}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource "
      "is true without x-kubernetes-preserve-unknown-fields"]),
    ({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": True,
                                             "x-kubernetes-preserve-unknown-fields": True}}},
     [f"{ROOT}.properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if "
      "x-kubernetes-int-or-string is true"]),
    ({"type": "object", "properties": {"u": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}}},
     [f"{ROOT}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime "
      "complexity becomes quadratic"]),
    ({"type": "object", "properties": {"r": {"$ref": "#/definitions/x"}}},
     [f"{ROOT}.properties[r].$ref: Forbidden: $ref is not supported",
      f"{ROOT}.properties[r].type: Required value: must not be empty for specified object fields"]),
    ({"type": "object", "properties": {"a": {"type": "string"}},
      "anyOf": [{"properties": {"a": {"pattern": "^x"}}}, {"properties": {"b": {"pattern": "^y"}}}]},
     [f"{ROOT}.properties[b]: Required value: because it is defined in {ROOT}.anyOf[1].properties[b]"]),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}},
     [f"{ROOT}.properties[s].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: "
      "missing ), unterminated subpattern at position 0"]),
])
def test_non_structural_schemas_are_refused_with_kubernetes_messages(schema, expected):
    assert messages(crds.crd_causes(with_schema(schema))) == expected


def test_int_or_string_any_of_pattern_is_structural():
    schema = {"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True,
                                                        "anyOf": [{"type": "integer"}, {"type": "string"}]}}}
    assert crds.crd_causes(with_schema(schema)) == []


def test_names_group_scope_versions_and_columns():
    bad = crd(group="example", scope="Galaxy")
    bad["metadata"]["name"] = "widgets.example"
    bad["spec"]["names"] = {"plural": "Widgets", "kind": "Widget", "listKind": "Widget", "shortNames": ["w_d"]}
    version = bad["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [{"name": "X", "type": "text", "jsonPath": "spec.x"}]
    version["subresources"] = {"scale": {"specReplicasPath": ".status.replicas"}}
    bad["spec"]["versions"].append({"name": "V2", "served": True, "storage": True, "schema": version["schema"]})
    found = messages(crds.crd_causes(bad))
    assert 'spec.group: Invalid value: "example": should be a domain with at least one dot' in found
    assert 'spec.scope: Unsupported value: "Galaxy": supported values: "Cluster", "Namespaced"' in found
    assert "spec.names.singular: Required value" in found
    assert any(m.startswith('spec.names.plural: Invalid value: "Widgets": a DNS-1035 label') for m in found)
    assert 'spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same' in found
    assert any(m.startswith('spec.names.shortNames[0]: Invalid value: "w_d"') for m in found)
    assert any(m.startswith('spec.versions[1].name: Invalid value: "V2"') for m in found)
    assert any(m.endswith("must have exactly one version marked as storage version") for m in found)
    assert ('spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "text": must be one of '
            "boolean,date,integer,number,string") in found
    assert ('spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: "spec.x": must be a simple '
            "json path starting with .") in found
    assert ('spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should '
            "be a json path under .spec") in found
    assert "spec.versions[0].subresources.scale.statusReplicasPath: Required value" in found


def test_selectable_fields_name_scalar_fields_of_the_schema():
    made = crd()
    made["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.size"}, {"jsonPath": ".spec.replicas"},
                                                       {"jsonPath": ".spec"}, {"jsonPath": ".spec.nope"},
                                                       {"jsonPath": ".spec.size"}]
    assert messages(crds.crd_causes(made)) == [
        'spec.versions[0].selectableFields[2].jsonPath: Invalid value: ".spec": selectable field path must refer '
        "to a string, number, boolean or enum field",
        'spec.versions[0].selectableFields[3].jsonPath: Invalid value: ".spec.nope": is an invalid path: does not '
        "refer to a valid field",
        'spec.versions[0].selectableFields[4].jsonPath: Duplicate value: ".spec.size"']
    made["spec"]["versions"][0]["selectableFields"] = made["spec"]["versions"][0]["selectableFields"][:2]
    assert crds.custom_resources(made)[0].custom.selectable_fields == ("spec.size", "spec.replicas")


def test_protected_groups_need_the_approval_annotation():
    reserved = crd(group="things.k8s.io")
    reserved["metadata"]["name"] = "widgets.things.k8s.io"
    assert messages(crds.crd_causes(reserved)) == [
        "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval "
        'annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111']
    reserved["metadata"]["annotations"] = {"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"}
    assert crds.crd_causes(reserved) == []


def test_updates_keep_group_and_plural_and_once_established_scope_and_kind():
    old = crd()
    old["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
    new = crd(scope="Cluster")
    new["spec"]["names"]["kind"] = "Gadget"
    assert messages(crds.crd_causes(new, old)) == [
        'spec.scope: Invalid value: "Cluster": field is immutable',
        'spec.names.kind: Invalid value: "Gadget": field is immutable']


def test_defaults_must_validate_against_their_schema():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "default": "one"}}}
    assert messages(crds.crd_causes(with_schema(schema))) == [
        f'{ROOT}.properties[n].default: Invalid value: "one": default in body must be of type integer: "string"']
    pruned = {"type": "object", "properties": {"o": {"type": "object", "default": {"x": 1},
                                                     "properties": {"y": {"type": "integer"}}}}}
    assert messages(crds.crd_causes(with_schema(pruned))) == [
        f"{ROOT}.properties[o].default.x: Forbidden: unknown field"]


def test_name_conflicts_with_builtins_and_other_crds():
    served = list(BUILTIN_RESOURCES) + crds.custom_resources(crd())
    other = crd()
    other["metadata"]["name"] = "gizmos.example.com"
    other["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList"}
    assert crds.name_conflicts(other, served) is None
    other["spec"]["names"]["shortNames"] = ["po"]
    assert crds.name_conflicts(other, served) == ("ShortNamesConflict", '"po" is already in use')
    other["spec"]["names"]["shortNames"] = []
    other["spec"]["names"]["singular"] = "widget"
    assert crds.name_conflicts(other, served) == ("SingularConflict", '"widget" is already in use')
    assert crds.name_conflicts(crd(), served) is None  # its own names are not a conflict


def test_served_versions_become_resource_infos_storage_first():
    made = crd()
    made["spec"]["versions"].insert(0, {"name": "v1beta1", "served": True, "storage": False})
    made["spec"]["versions"].append({"name": "v0", "served": False, "storage": False})
    infos = crds.custom_resources(made)
    assert [i.version for i in infos] == ["v1", "v1beta1"]
    assert infos[0].key_prefix("ns") == "/registry/example.com/widgets/ns/"
    assert infos[0].custom.storage_version == "v1" and infos[0].custom.columns[0].name == "Age"
    assert [i.version for i in crds.custom_resources(made, served_only=False)] == ["v1", "v1beta1", "v0"]


# ---------------------------------------------------------------- StructuralSchema

OBJECT_SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string", "default": "x"}}, "default": {}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "default": 7}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"k": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "embedded": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "x-kubernetes-preserve-unknown-fields": True},
        "nullable": {"type": "string", "nullable": True},
        "empty": {"type": "object"},
    }}}}


def test_defaults_fill_nested_missing_fields_and_items():
    obj = {"spec": {"list": [{}, {"n": 1}]}}
    StructuralSchema(OBJECT_SCHEMA).default(obj)
    assert obj == {"spec": {"a": {"b": "x"}, "list": [{"n": 7}, {"n": 1}]}}


def test_pruning_drops_unknown_fields_except_where_preserved():
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "top": 1,
           "spec": {"zzz": 1, "list": [{"n": 1, "q": 2}], "map": {"m": {"k": "v", "j": 1}},
                    "free": {"any": {"thing": 1}}, "embedded": {"apiVersion": "v1", "kind": "Pod", "x": 1},
                    "empty": {"gone": 1}}}
    pruned = StructuralSchema(OBJECT_SCHEMA).prune(obj)
    assert sorted(pruned) == ["spec.empty.gone", "spec.list[0].q", "spec.map.m.j", "spec.zzz", "top"]
    assert obj["spec"]["free"] == {"any": {"thing": 1}} and obj["spec"]["embedded"]["x"] == 1
    assert obj["metadata"] == {"name": "n"}


@pytest.mark.parametrize("schema, value, message", [
    ({"type": "integer", "minimum": 1, "exclusiveMinimum": True}, 1,
     "Invalid value: 1: f in body should be greater than 1"),
    ({"type": "number", "maximum": 2.5}, 3, "Invalid value: 3: f in body should be less than or equal to 2.5"),
    ({"type": "integer", "multipleOf": 5}, 7, "Invalid value: 7: f in body should be a multiple of 5"),
    ({"type": "string", "minLength": 3}, "ab", 'Invalid value: "ab": f in body should be at least 3 chars long'),
    ({"type": "string", "maxLength": 1}, "ab", "Too long: may not be more than 1 byte"),
    ({"type": "array", "minItems": 1, "items": {"type": "string"}}, [],
     "Invalid value: []: f in body should have at least 1 items"),
    ({"type": "boolean"}, "yes", 'Invalid value: "yes": f in body must be of type boolean: "string"'),
    ({"type": "string"}, None, 'Invalid value: null: f in body must be of type string: "null"'),
    ({"type": "integer", "enum": [1, 2]}, True, 'Invalid value: true: f in body must be of type integer: "boolean"'),
    ({"type": "string", "not": {"enum": ["no"]}}, "no", 'Invalid value: "no": f in body must not validate the schema (not)'),
    ({"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]}, "ab",
     'Invalid value: "ab": f in body must validate one and only one schema (oneOf)'),
    ({"type": "string", "format": "date-time"}, "yesterday",
     'Invalid value: "yesterday": f in body must be of type date-time: "yesterday"'),
    ({"type": "string", "format": "ipv4"}, "10.0.0.256", 'Invalid value: "10.0.0.256": f in body must be of type ipv4: "10.0.0.256"'),
    ({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}, ["a", "b", "a"],
     'Duplicate value: "a"'),
    ({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
      "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
     [{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}], 'Duplicate value: {"name":"a"}'),
    ({"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "b$"}]}, "c",
     'Invalid value: "c": f in body must validate at least one schema (anyOf)'),
])
def test_value_validations_speak_kubernetes(schema, value, message):
    root = {"type": "object", "properties": {"f": schema}}
    assert [c["message"] for c in StructuralSchema(root).validate({"f": value})] == [message]


def test_valid_values_pass():
    root = {"type": "object", "properties": {
        "i": {"type": "integer", "minimum": 0}, "f": {"type": "number"}, "n": {"type": "string", "nullable": True},
        "t": {"type": "string", "format": "date-time"}, "c": {"type": "string", "format": "cidr"},
        "o": {"type": "string", "format": "some-format-nobody-checks"},
        "p": {"x-kubernetes-int-or-string": True}, "q": {"x-kubernetes-int-or-string": True},
        "e": {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}}}
    obj = {"i": 2.0, "f": 1, "n": None, "p": 1, "q": "50%", "e": {"apiVersion": "v1", "kind": "Pod"},
           "t": "2026-12-04T16:00:00.5Z", "c": "10.0.0.0/8", "o": "anything"}
    assert StructuralSchema(root).validate(obj) == []
    missing = StructuralSchema(root).validate({"e": {"kind": "Pod"}})
    assert [(c["field"], c["message"]) for c in missing] == [("e.apiVersion", "Required value: must not be empty")]


def test_rules_and_schema_walks_never_raise_on_well_shaped_garbage():
    """Random values put into a CRD (where its OpenAPI shape allows them) and into objects:
    the rules answer with causes, never with an exception."""
    import random

    from pkube.api.validation import Validator

    rng, validator = random.Random(7), Validator()
    values = [None, 0, -1, 2.5, "", "x", "(", [], {}, [1], {"a": None}, True, {"type": "string"}]
    base = crd()
    base["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = copy.deepcopy(OBJECT_SCHEMA)
    paths = list(_paths(base))
    for _ in range(300):
        mutated = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            _put(mutated, rng.choice(paths), rng.choice(values))
        if any(c["reason"] == "FieldValueTypeInvalid" for c in validator.validate(mutated, strict=True)):
            continue
        if not crds.crd_causes(mutated):
            schema = crds.custom_resources(mutated)[0].custom.schema
            obj = {"spec": {"a": rng.choice(values), "list": [rng.choice(values)], "map": {"k": rng.choice(values)}}}
            schema.default(obj), schema.prune(obj), schema.validate(obj)


def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def _put(node, path, value) -> None:
    """Set ``value`` at ``path`` when that path still exists (an earlier change may have cut it)."""
    try:
        for key in path[:-1]:
            node = node[key]
        if path:
            node[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        pass


def test_updates_ratchet_problems_of_unchanged_values():
    root = {"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
        "name": {"type": "string", "maxLength": 3}, "size": {"type": "string"}, "other": {"type": "integer"}}}}}
    schema = StructuralSchema(root)
    old = {"spec": {"name": "too-long", "other": 1}}   # valid before the schema tightened
    assert schema.validate(copy.deepcopy(old), old) == []
    other_changed = schema.validate({"spec": {"name": "too-long", "other": 2}}, old)
    assert [c["field"] for c in other_changed] == ["spec.size"]   # spec changed: its required field counts
    name_changed = schema.validate({"spec": {"name": "longer-still", "other": 1}}, old)
    assert [c["field"] for c in name_changed] == ["spec.size", "spec.name"]
    assert [c["field"] for c in schema.validate(copy.deepcopy(old))] == ["spec.size", "spec.name"]
