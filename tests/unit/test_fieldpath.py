"""FieldsV1 sets (pkube/api/fieldpath.py): membership, set algebra, Kubernetes' encoding and order."""

from pkube.api import fieldpath as fp


def test_elements_are_encoded_as_kubernetes_writes_them():
    assert fp.field_element("replicas") == "f:replicas"
    assert fp.key_element({"protocol": "TCP", "containerPort": 80}) == 'k:{"containerPort":80,"protocol":"TCP"}'
    assert fp.value_element("finalizer.example.com/x") == 'v:"finalizer.example.com/x"'
    assert fp.index_element(3) == "i:3"


def test_membership_of_leaves_and_of_nodes_with_children():
    tree = {"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    assert not fp.is_member(tree["f:spec"]) and fp.is_member(tree["f:spec"]["f:replicas"])
    assert fp.is_member(tree["f:metadata"]["f:labels"])
    assert list(fp.paths(tree)) == [("f:metadata", "f:labels"), ("f:metadata", "f:labels", "f:app"),
                                    ("f:spec", "f:replicas")]


def test_union_keeps_every_member_once():
    a = {"f:spec": {"f:replicas": {}}}
    b = {"f:spec": {"f:paused": {}, "f:replicas": {}}, "f:metadata": {"f:labels": {}}}
    assert fp.union(a, b) == {"f:spec": {"f:replicas": {}, "f:paused": {}}, "f:metadata": {"f:labels": {}}}
    assert fp.union({"f:x": {}}, {"f:x": {"f:y": {}}}) == {"f:x": {".": {}, "f:y": {}}}


def test_difference_removes_members_but_not_what_is_below_them():
    a = {"f:labels": {".": {}, "f:app": {}}, "f:spec": {"f:replicas": {}}}
    assert fp.difference(a, {"f:labels": {}}) == {"f:labels": {"f:app": {}}, "f:spec": {"f:replicas": {}}}
    assert fp.difference(a, {"f:spec": {"f:replicas": {}}}) == {"f:labels": {".": {}, "f:app": {}}}
    assert fp.difference(a, a) == {}


def test_recursive_difference_removes_everything_below_a_member():
    a = {"f:status": {"f:replicas": {}}, "f:spec": {"f:replicas": {}}}
    assert fp.recursive_difference(a, {"f:status": {}}) == {"f:spec": {"f:replicas": {}}}


def test_intersection():
    a = {"f:spec": {"f:replicas": {}, "f:paused": {}}}
    b = {"f:spec": {"f:replicas": {}}, "f:metadata": {}}
    assert fp.intersection(a, b) == {"f:spec": {"f:replicas": {}}}
    assert fp.intersection({"f:x": {".": {}, "f:y": {}}}, {"f:x": {"f:y": {}}}) == {"f:x": {"f:y": {}}}


def test_canonical_order_puts_the_dot_first_then_fields_keys_and_values():
    tree = {'v:"b"': {}, 'k:{"a":1}': {}, "f:z": {}, "f:a": {"f:y": {}, ".": {}}}
    out = fp.canonical(tree)
    assert list(out) == ["f:a", "f:z", 'k:{"a":1}', 'v:"b"']
    assert list(out["f:a"]) == [".", "f:y"]


def test_paths_print_as_in_kubernetes_conflicts():
    assert fp.path_string(("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")) == \
        '.spec.containers[name="app"].image'
    assert fp.path_string(("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')) == \
        '.ports[containerPort=80,protocol="TCP"]'
    assert fp.path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'
    assert fp.path_string(("f:args", "i:0")) == ".args[0]"
