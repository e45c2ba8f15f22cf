"""Server-side apply's pure parts: types from the schemas (pkube/api/fieldtypes.py), field sets,
comparison, merge and pruning (pkube/api/typedvalue.py), and the field manager's Update and Apply
operations with their conflicts and the client-side-apply upgrade (pkube/api/managedfields.py)."""

import copy
import json

import pytest

from pkube.api import managedfields as mf
from pkube.api.fieldtypes import LIST, MAP, STRUCT, TypeCatalog
from pkube.api.typedvalue import compare, field_set, merge

CATALOG = TypeCatalog()
DEPLOYMENT = CATALOG.builtin("apps/v1", "Deployment")
POD = CATALOG.builtin("v1", "Pod")


def op(manager, subresource="", now="2026-12-05T08:00:00Z", version="apps/v1"):
    return mf.Operation(manager, version, subresource, now)


def deployment(replicas=2, image="nginx", labels=None, env=None) -> dict:
    container = {"name": "app", "image": image, **({"env": env} if env else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", **({"labels": labels} if labels else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [container]}}}}


# ---- types ---------------------------------------------------------------------------------------

def test_types_come_from_list_types_and_from_strategic_merge_keys():
    spec = POD.child("spec")[0]
    containers = spec.child("containers")[0]
    assert (containers.kind, containers.relation, containers.keys) == (LIST, "map", ("name",))
    ports = containers.item.child("ports")[0]
    assert ports.keys == ("containerPort", "protocol")
    finalizers = POD.child("metadata")[0].child("finalizers")[0]
    assert finalizers.relation == "set"
    assert spec.child("tolerations")[0].relation == "atomic"
    assert POD.child("metadata")[0].child("labels")[0].kind == MAP
    selector = DEPLOYMENT.child("spec")[0].child("selector")[0]
    assert selector.kind == STRUCT and selector.atomic


def test_a_missing_map_key_takes_its_default():
    ports = POD.child("spec")[0].child("containers")[0].item.child("ports")[0]
    assert ports.element({"containerPort": 80}, 0) == 'k:{"containerPort":80,"protocol":"TCP"}'


def test_custom_resource_types_from_their_structural_schema_with_object_meta():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                  "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}
    root = CATALOG.custom(schema)
    assert root.child("spec")[0].child("items")[0].keys == ("id",)
    assert root.child("metadata")[0].child("labels")[0].kind == MAP
    obj = {"metadata": {"labels": {"a": "b"}}, "spec": {"items": [{"id": 1}], "free": {"x": {"y": 1}}}}
    assert field_set(obj, root) == {"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {
        "f:items": {'k:{"id":1}': {".": {}, "f:id": {}}}, "f:free": {"f:x": {".": {}, "f:y": {}}}}}


# ---- sets, comparison, merge ---------------------------------------------------------------------

def test_field_set_of_a_configuration():
    assert field_set(deployment(labels={"tier": "web"}), DEPLOYMENT) == {
        "f:apiVersion": {}, "f:kind": {}, "f:metadata": {"f:name": {}, "f:labels": {"f:tier": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}


def test_empty_objects_and_nulls_are_members_and_empty_lists_are_not():
    obj = {"spec": {"template": {"spec": {"securityContext": {}, "nodeName": None, "volumes": []}}}}
    assert field_set(obj, DEPLOYMENT) == {"f:spec": {"f:template": {"f:spec": {
        "f:securityContext": {}, "f:nodeName": {}}}}}


def test_compare_marks_added_objects_and_items_themselves():
    old = deployment()
    new = deployment(replicas=3, labels={"a": "1"}, env=[{"name": "X", "value": "1"}])
    result = compare(old, new, DEPLOYMENT)
    assert result.modified == {"f:spec": {"f:replicas": {}}}
    assert result.added == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:template": {"f:spec": {
        "f:containers": {'k:{"name":"app"}': {"f:env": {".": {}, 'k:{"name":"X"}': {
            ".": {}, "f:name": {}, "f:value": {}}}}}}}}}
    assert compare(new, old, DEPLOYMENT).removed == result.added


def test_merge_joins_map_lists_by_key_and_replaces_atomic_ones():
    live = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}],
                                           "tolerations": [{"key": "x"}]}}}}
    config = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "c"}],
                                             "tolerations": [{"key": "y"}]}}}}
    merged = merge(live, config, DEPLOYMENT)["spec"]["template"]["spec"]
    assert merged["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "3"}, {"name": "c"}]
    assert merged["tolerations"] == [{"key": "y"}]


def test_merge_keeps_the_configuration_order_of_shared_items():
    node = POD.child("metadata")[0].child("finalizers")[0]
    assert merge(["a", "b", "x"], ["b", "a"], node) == ["b", "x", "a"]  # structured-merge-diff: same order


# ---- Update --------------------------------------------------------------------------------------

def test_a_create_is_owned_by_its_writer_with_kubernetes_markers():
    obj = deployment(labels={"a": "1"})
    entries = mf.create(obj, [], op("kubectl-create"), DEPLOYMENT)
    (entry,) = mf.encode(entries)
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    fields = entry["fieldsV1"]
    assert "f:apiVersion" not in fields and "f:name" not in fields["f:metadata"]
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:a": {}}}
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}}


def test_an_update_takes_over_changed_fields_and_removal_leaves_every_owner():
    obj = deployment(labels={"a": "1"})
    entries = mf.create(obj, [], op("creator"), DEPLOYMENT)
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 5
    del scaled["metadata"]["labels"]
    entries = mf.update(obj, scaled, entries, op("scaler", now="2026-12-05T09:00:00Z"), DEPLOYMENT)
    owners = {e.manager: e for e in entries}
    assert owners["scaler"].fields == {"f:spec": {"f:replicas": {}}} and owners["scaler"].time.startswith("2026-12-05T09")
    assert "f:replicas" not in owners["creator"].fields["f:spec"]
    assert "f:labels" not in owners["creator"].fields.get("f:metadata", {})


def test_an_update_changing_nothing_moves_no_time_and_adds_no_manager():
    obj = deployment()
    entries = mf.create(obj, [], op("creator"), DEPLOYMENT)
    assert mf.update(obj, copy.deepcopy(obj), entries, op("other", now="later"), DEPLOYMENT) == entries


# ---- Apply ---------------------------------------------------------------------------------------

def applied(config, live=None, entries=(), manager="kubectl", force=False, now="2026-12-05T08:00:00Z"):
    new, out = mf.apply(live or {}, config, list(entries), op(manager, now=now), DEPLOYMENT, force)
    return new, out


def test_an_applier_owns_exactly_its_configuration():
    new, entries = applied(deployment())
    assert new == deployment()
    (entry,) = entries
    assert (entry.manager, entry.operation, entry.time) == ("kubectl", "Apply", "2026-12-05T08:00:00Z")
    assert entry.fields["f:spec"]["f:selector"] == {}


def test_a_changed_field_owned_by_another_manager_conflicts_and_forcing_takes_it():
    live, entries = applied(deployment(), manager="a")
    with pytest.raises(mf.ApplyConflict) as conflict:
        applied(deployment(replicas=3, image="other"), live, entries, manager="b")
    assert conflict.value.message() == (
        'Apply failed with 2 conflicts: conflicts with "a":\n- .spec.replicas\n'
        '- .spec.template.spec.containers[name="app"].image')
    assert conflict.value.causes()[0] == {"reason": "FieldManagerConflict", "message": 'conflict with "a"',
                                          "field": ".spec.replicas"}
    new, out = applied(deployment(replicas=3, image="other"), live, entries, manager="b", force=True)
    owners = {e.manager: e.fields for e in out}
    assert new["spec"]["replicas"] == 3
    assert "f:replicas" not in owners["a"]["f:spec"] and "f:replicas" in owners["b"]["f:spec"]


def test_an_update_manager_is_named_with_its_version_and_subresource_in_conflicts():
    live, entries = applied(deployment(), manager="a")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 9
    entries = mf.update(live, scaled, entries, op("kube-controller-manager", "scale"), DEPLOYMENT)
    with pytest.raises(mf.ApplyConflict) as conflict:
        applied(deployment(replicas=3), scaled, entries, manager="a")
    assert str(conflict.value) == ('Apply failed with 1 conflict: conflict with "kube-controller-manager" with '
                                   'subresource "scale" using apps/v1: .spec.replicas')


def test_the_same_value_applied_by_two_managers_is_shared():
    live, entries = applied(deployment(), manager="a")
    new, entries = applied(deployment(), live, entries, manager="b")
    owners = {e.manager: e for e in entries}
    assert owners["a"].fields == owners["b"].fields
    assert owners["b"].time is None, "an apply that changes nothing leaves no time"


def test_a_field_an_applier_drops_goes_unless_another_manager_owns_it():
    live, entries = applied(deployment(labels={"a": "1", "b": "2"}), manager="a")
    live, entries = applied({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                                                                                      "labels": {"b": "2"}}},
                            live, entries, manager="other")
    new, entries = applied(deployment(), live, entries, manager="a")
    assert new["metadata"]["labels"] == {"b": "2"}
    new, entries = applied(deployment(env=None), new, entries, manager="a")
    assert new["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "nginx"}]


def test_a_list_item_dropped_by_its_applier_is_removed():
    live, entries = applied(deployment(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))
    new, _ = applied(deployment(env=[{"name": "B", "value": "2"}]), live, entries)
    assert new["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]


def test_a_conflicting_apply_changes_nothing():
    live, entries = applied(deployment(), manager="a")
    before = json.dumps([live, mf.encode(entries)])
    with pytest.raises(mf.ApplyConflict):
        applied(deployment(replicas=7), live, entries, manager="b")
    assert json.dumps([live, mf.encode(entries)]) == before


# ---- the client-side apply upgrade ---------------------------------------------------------------

def test_kubectl_takes_over_fields_its_last_applied_configuration_set():
    config = deployment()
    live = copy.deepcopy(config)
    live["metadata"]["annotations"] = {mf.LAST_APPLIED: json.dumps(config)}
    entries = mf.create(live, [], op("kubectl-client-side-apply"), DEPLOYMENT)
    changed = deployment(image="v2")
    with pytest.raises(mf.ApplyConflict) as conflict:
        applied(changed, live, entries)
    assert mf.upgrade_conflicts(live, conflict.value, DEPLOYMENT) == []
    live["spec"]["replicas"] = 5   # changed live since the last client-side apply: a real conflict
    entries = mf.update(deployment(), live, entries, op("kubectl-client-side-apply"), DEPLOYMENT)
    with pytest.raises(mf.ApplyConflict) as conflict:
        applied(changed, live, entries)
    remaining = mf.upgrade_conflicts(live, conflict.value, DEPLOYMENT)
    assert [mf.fieldpath.path_string(path) for _, path in remaining] == [".spec.replicas"]


def test_kubectl_apply_rewrites_an_existing_last_applied_annotation():
    new = {"metadata": {"annotations": {mf.LAST_APPLIED: "{}", "x": "y"}}}
    mf.sync_last_applied(new, deployment())
    text = new["metadata"]["annotations"][mf.LAST_APPLIED]
    assert json.loads(text) == deployment() and text.endswith("\n") and new["metadata"]["annotations"]["x"] == "y"
    untouched = {"metadata": {}}
    mf.sync_last_applied(untouched, deployment())
    assert untouched == {"metadata": {}}


def test_entries_are_encoded_appliers_first_then_by_time():
    entries = [mf.Entry("u", "Update", "apps/v1", {"f:b": {}}, "2026-01-02T00:00:00Z"),
               mf.Entry("x", "Update", "apps/v1", {"f:a": {}}, "2026-01-01T00:00:00Z", "status"),
               mf.Entry("k", "Apply", "apps/v1", {"f:z": {}, "f:a": {}}, None)]
    encoded = mf.encode(entries)
    assert [e["manager"] for e in encoded] == ["k", "x", "u"]
    assert list(encoded[1]) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"]
    assert list(applied(deployment())[1][0].fields["f:spec"]) == ["f:replicas", "f:selector", "f:template"]
    assert mf.decode({"metadata": {"managedFields": encoded}})[1] == entries[1]


def test_more_than_ten_update_managers_fold_the_oldest_into_ancient_changes():
    entries = [mf.Entry(f"m{i:02}", "Update", "apps/v1", {f"f:x{i}": {}}, f"2026-01-01T00:00:{i:02}Z")
               for i in range(12)]
    capped = mf.cap_updaters(entries + [mf.Entry("k", "Apply", "apps/v1", {"f:a": {}})])
    names = sorted(e.manager for e in capped)
    assert names == ["ancient-changes", "k"] + [f"m{i:02}" for i in range(3, 12)]
    ancient = next(e for e in capped if e.manager == "ancient-changes")
    assert ancient.fields == {"f:x0": {}, "f:x1": {}, "f:x2": {}} and ancient.time == "2026-01-01T00:00:02Z"


def test_a_created_deployment_is_owned_as_kubernetes_shows_it():
    """What `kubectl create deployment` shows in Kubernetes 1.32: value structs (spec, strategy,
    template) without ".", the pointer rollingUpdate, maps, lists and items with it."""
    obj = deployment()
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    obj["spec"]["template"]["spec"]["securityContext"] = {}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    (entry,) = mf.create(obj, [], op("kubectl-create"), DEPLOYMENT)
    assert entry.fields["f:spec"]["f:strategy"] == {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                                                    "f:type": {}}
    template = entry.fields["f:spec"]["f:template"]
    assert template["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert template["f:spec"]["f:securityContext"] == {}
    assert template["f:spec"]["f:containers"]['k:{"name":"app"}']["f:resources"] == {}


def test_a_created_custom_resource_has_every_object_added():
    root = CATALOG.custom({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "size": {"type": "integer"}}}}})
    obj = {"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w", "labels": {"a": "b"}},
           "spec": {"size": 1}}
    (entry,) = mf.create(obj, [], op("kubectl-create", version="example.com/v1"), root, custom=True)
    assert entry.fields == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {".": {}, "f:size": {}}}
