"""Static pod manifests: parsing, naming, stable uids, broken files reported and skipped."""

from __future__ import annotations

from pkube.kubelet.mirror import is_mirror, mirror_of
from pkube.kubelet.static import CONFIG_HASH, read_manifests

POD = """apiVersion: v1
kind: Pod
metadata: {name: web, namespace: kube-system, labels: {app: web}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


def read(directory):
    errors = []
    pods = read_manifests(str(directory), "n1", errors.append)
    return pods, errors


def test_a_manifest_becomes_a_static_pod_named_after_the_node(tmp_path):
    (tmp_path / "web.yaml").write_text(POD)
    pods, errors = read(tmp_path)
    assert errors == []
    (pod,) = pods.values()
    assert pod["metadata"]["name"] == "web-n1" and pod["metadata"]["namespace"] == "kube-system"
    assert pod["spec"]["nodeName"] == "n1" and pod["metadata"]["annotations"][CONFIG_HASH] == pod["metadata"]["uid"]
    assert read(tmp_path)[0].keys() == pods.keys()     # the same file keeps its uid


def test_a_changed_manifest_is_a_new_pod(tmp_path):
    (tmp_path / "web.yaml").write_text(POD)
    before = read(tmp_path)[0]
    (tmp_path / "web.yaml").write_text(POD.replace("3600", "60"))
    assert read(tmp_path)[0].keys() != before.keys()


def test_several_documents_json_and_skipped_files(tmp_path):
    (tmp_path / "two.yml").write_text(POD + "---\n" + POD.replace("name: web", "name: api"))
    (tmp_path / "three.json").write_text('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"},'
                                         ' "spec": {"containers": [{"name": "c", "image": "busybox"}]}}')
    (tmp_path / ".hidden.yaml").write_text(POD)
    (tmp_path / "web.yaml~").write_text(POD)
    (tmp_path / "notes.txt").write_text("hello")
    names = sorted(p["metadata"]["name"] for p in read(tmp_path)[0].values())
    assert names == ["api-n1", "j-n1", "web-n1"]


def test_broken_manifests_are_reported_and_the_others_kept(tmp_path):
    (tmp_path / "good.yaml").write_text(POD)
    (tmp_path / "bad.yaml").write_text("kind: Pod\nmetadata: {name: [unclosed\n")
    (tmp_path / "noname.yaml").write_text("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c}]}\n")
    (tmp_path / "deploy.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
    pods, errors = read(tmp_path)
    assert [p["metadata"]["name"] for p in pods.values()] == ["web-n1"]
    assert len(errors) == 3
    assert any("bad.yaml: not valid YAML" in e for e in errors)
    assert any("noname.yaml: the pod has no metadata.name" in e for e in errors)
    assert any("deploy.yaml: kind 'Deployment' is not Pod" in e for e in errors)


def test_the_mirror_is_owned_by_the_node_and_marked(tmp_path):
    (tmp_path / "web.yaml").write_text(POD)
    (pod,) = read(tmp_path)[0].values()
    mirror = mirror_of(pod, {"metadata": {"name": "n1", "uid": "node-uid"}})
    assert is_mirror(mirror) and "uid" not in mirror["metadata"]
    assert mirror["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": "n1",
                                                        "uid": "node-uid", "controller": True}
