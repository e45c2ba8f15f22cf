"""pkubectl hides metadata.managedFields in -o yaml|json unless --show-managed-fields, as kubectl does."""

from pkube.kubectl.printers import parse_output, print_objects

OBJ = {"apiVersion": "v1", "kind": "ConfigMap",
       "metadata": {"name": "c", "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}}


def test_yaml_and_json_leave_managed_fields_out_unless_asked():
    for output in ("yaml", "json"):
        assert "managedFields" not in print_objects([OBJ], parse_output(output), True)
        assert "managedFields" in print_objects([OBJ], parse_output(output), True, show_managed_fields=True)
    assert OBJ["metadata"]["managedFields"], "the object itself is left as it was"
