"""pkubectl apply: last-applied annotation, three-way patches, manifest reading, rollout status."""

import json

import pytest

from pkube.kubectl.apply import LAST_APPLIED, apply_patch, original_of, three_way_json_merge_patch, with_last_applied
from pkube.kubectl.errors import CliError
from pkube.kubectl.manifests import parse_documents, read_manifests, validate_manifests
from pkube.kubectl.rollout import rollout_status, undo_patch


def deployment(image="nginx:1", env=None) -> dict:
    container = {"name": "app", "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}}}


def live(applied: dict) -> dict:
    """What the server holds after applying: the file plus server-set fields."""
    obj = json.loads(json.dumps(with_last_applied(applied)))
    obj["metadata"].update(uid="u1", resourceVersion="7")
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    obj["status"] = {"replicas": 2}
    return obj


def test_last_applied_annotation_is_the_file_without_itself():
    modified = with_last_applied(deployment())
    text = modified["metadata"]["annotations"][LAST_APPLIED]
    assert text.endswith("\n") and LAST_APPLIED not in text
    expected = deployment()
    expected["metadata"]["annotations"] = {}
    assert json.loads(text) == expected and original_of(modified) == expected
    assert text.startswith('{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web"')


def test_unchanged_file_gives_an_empty_patch():
    first = deployment(env={"A": "1"})
    patch, _ = apply_patch(first, with_last_applied(first), live(first))
    assert patch == {}


def test_removed_env_var_is_deleted_and_server_fields_kept():
    first, second = deployment(env={"A": "1", "B": "2"}), deployment(env={"A": "1"})
    current = live(first)
    patch, kind = apply_patch(original_of(current), with_last_applied(second), current)
    assert kind == "strategic"
    from pkube.api.strategic import strategic_merge_patch

    result = strategic_merge_patch(current, patch, "Deployment")
    container = result["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert result["status"] == {"replicas": 2}


def test_three_way_json_merge_patch_for_kinds_without_schema():
    original = {"spec": {"a": 1, "b": 2}, "metadata": {"name": "x"}}
    modified = {"spec": {"a": 5}, "metadata": {"name": "x"}}
    current = {"spec": {"a": 1, "b": 2, "c": 3}, "metadata": {"name": "x", "uid": "u"}}
    assert three_way_json_merge_patch(original, modified, current) == {"spec": {"a": 5, "b": None}}


def test_manifests_multi_document_and_line_numbers(tmp_path):
    good = tmp_path / "app.yaml"
    good.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n"
                    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: s}}\n")
    found = read_manifests([str(tmp_path)])
    assert [(m.document, m.obj["kind"]) for m in found] == [(1, "ConfigMap"), (2, "Secret")]
    with pytest.raises(CliError, match=r"error parsing bad.yaml: line 3"):
        parse_documents("apiVersion: v1\nkind: Pod\n  bad: [\n", "bad.yaml")
    with pytest.raises(CliError, match='the path ".*nope" does not exist'):
        read_manifests([str(tmp_path / "nope")])


def test_validation_names_file_document_and_field():
    bad = deployment()
    bad["spec"]["replicas"] = "two"
    manifests = parse_documents(json.dumps(deployment()) + "\n---\n" + json.dumps(bad), "web.yaml")
    with pytest.raises(CliError) as caught:
        validate_manifests(manifests)
    assert str(caught.value).startswith("web.yaml: document 2: spec.replicas: ")


@pytest.mark.parametrize("status, generation, expected, done", [
    ({"observedGeneration": 1}, 2, "Waiting for deployment spec update to be observed...", False),
    ({"observedGeneration": 2, "updatedReplicas": 1}, 2,
     'Waiting for deployment "web" rollout to finish: 1 out of 2 new replicas have been updated...', False),
    ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}, 2,
     'Waiting for deployment "web" rollout to finish: 1 of 2 updated replicas are available...', False),
    ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}, 2,
     'deployment "web" successfully rolled out', True),
])
def test_rollout_status_lines(status, generation, expected, done):
    obj = deployment()
    obj["metadata"]["generation"] = generation
    obj["status"] = status
    assert rollout_status(obj) == (expected, done)


def test_undo_uses_the_previous_revision_template():
    current = deployment("nginx:2")
    current["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    old = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}},
           "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                                 "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}}}
    patch = undo_patch(current, [old])
    assert patch["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert patch["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
