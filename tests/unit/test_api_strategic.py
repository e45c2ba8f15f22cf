"""Strategic merge patch and the three-way patch of `kubectl apply`, with the behaviour of the
Kubernetes docs ("Update API Objects in Place Using kubectl patch") and apply's field removal."""

import copy
import random

import pytest

from pkube.api.patch import PatchError, strategic_merge_patch, three_way_merge_patch


def deployment():
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "patch-demo", "labels": {"app": "nginx", "tier": "web"},
                     "finalizers": ["example.com/a"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{
                        "name": "patch-demo-ctr", "image": "nginx",
                        "args": ["-g", "daemon off;"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
                },
            },
        },
    }


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def test_docs_example_adds_a_second_container():
    patched = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "patch-demo-ctr-2", "image": "redis"}]}}}}, "Deployment")
    assert [c["name"] for c in pod_spec(patched)["containers"]] == ["patch-demo-ctr", "patch-demo-ctr-2"]
    assert pod_spec(patched)["containers"][0]["image"] == "nginx"


def test_docs_example_tolerations_are_replaced():
    patched = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"tolerations": [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}}}}, "Deployment")
    assert pod_spec(patched)["tolerations"] == [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]


@pytest.mark.parametrize("patch, check", [
    # merge by name: only the named container changes
    ({"containers": [{"name": "patch-demo-ctr", "image": "nginx:1.26"}]},
     lambda s: s["containers"][0]["image"] == "nginx:1.26" and s["containers"][0]["args"] == ["-g", "daemon off;"]),
    # env merges by name inside the container
    ({"containers": [{"name": "patch-demo-ctr", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]},
     lambda s: s["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                              {"name": "C", "value": "4"}]),
    # $patch: delete removes one element
    ({"containers": [{"name": "patch-demo-ctr", "env": [{"name": "A", "$patch": "delete"}]}]},
     lambda s: s["containers"][0]["env"] == [{"name": "B", "value": "2"}]),
    # $patch: replace as a list element replaces the list
    ({"containers": [{"name": "patch-demo-ctr", "env": [{"name": "Z", "value": "9"}, {"$patch": "replace"}]}]},
     lambda s: s["containers"][0]["env"] == [{"name": "Z", "value": "9"}]),
    # container ports merge by containerPort
    ({"containers": [{"name": "patch-demo-ctr", "ports": [{"containerPort": 80, "name": "http"},
                                                          {"containerPort": 443}]}]},
     lambda s: s["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"},
                                               {"containerPort": 443}]),
    # volumeMounts merge by mountPath
    ({"containers": [{"name": "patch-demo-ctr", "volumeMounts": [{"name": "data", "mountPath": "/data",
                                                                   "readOnly": True}]}]},
     lambda s: s["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]),
    # args (no strategy) are replaced
    ({"containers": [{"name": "patch-demo-ctr", "args": ["-v"]}]},
     lambda s: s["containers"][0]["args"] == ["-v"]),
    # null deletes a field
    ({"containers": [{"name": "patch-demo-ctr", "args": None}]},
     lambda s: "args" not in s["containers"][0]),
    # volumes merge by name
    ({"volumes": [{"name": "cache", "emptyDir": {}}]},
     lambda s: [v["name"] for v in s["volumes"]] == ["data", "cache"]),
    # $setElementOrder reorders
    ({"containers": [{"name": "b", "image": "b"}],
      "$setElementOrder/containers": [{"name": "b"}, {"name": "patch-demo-ctr"}]},
     lambda s: [c["name"] for c in s["containers"]] == ["b", "patch-demo-ctr"]),
    # imagePullSecrets merge by name
    ({"imagePullSecrets": [{"name": "regcred"}]}, lambda s: s["imagePullSecrets"] == [{"name": "regcred"}]),
])
def test_pod_template_lists_merge_by_their_keys(patch, check):
    target = deployment()
    before = copy.deepcopy(target)
    patched = strategic_merge_patch(target, {"spec": {"template": {"spec": patch}}}, "Deployment")
    assert check(pod_spec(patched)), pod_spec(patched)
    assert target == before


def test_kubectl_label_and_map_directives():
    d = deployment()
    assert strategic_merge_patch(d, {"metadata": {"labels": {"env": "prod", "tier": None}}},
                                 "Deployment")["metadata"]["labels"] == {"app": "nginx", "env": "prod"}
    assert strategic_merge_patch(d, {"metadata": {"labels": {"only": "this", "$patch": "replace"}}},
                                 "Deployment")["metadata"]["labels"] == {"only": "this"}
    assert "labels" not in strategic_merge_patch(d, {"metadata": {"labels": {"$patch": "delete"}}},
                                                 "Deployment")["metadata"]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list():
    d = deployment()
    added = strategic_merge_patch(d, {"metadata": {"finalizers": ["example.com/b", "example.com/a"]}}, "Deployment")
    assert added["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]
    removed = strategic_merge_patch(added, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}},
                                    "Deployment")
    assert removed["metadata"]["finalizers"] == ["example.com/b"]


def test_retain_keys_clears_the_old_strategy():
    patched = strategic_merge_patch(deployment(), {"spec": {"strategy": {
        "type": "Recreate", "rollingUpdate": None, "$retainKeys": ["type"]}}}, "Deployment")
    assert patched["spec"]["strategy"] == {"type": "Recreate"}


def test_service_ports_merge_by_port():
    service = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}],
                                           "selector": {"app": "a"}}}
    patched = strategic_merge_patch(service, {"spec": {"ports": [{"port": 80, "targetPort": 9090},
                                                                 {"port": 443, "name": "https"}]}}, "Service")
    assert patched["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "name": "http"},
                                        {"port": 443, "name": "https"}]


def test_pod_containers_merge_and_status_conditions_merge_by_type():
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "x"}]},
           "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    patched = strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Pod")
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                               {"type": "PodScheduled", "status": "True"}]


def test_unknown_kind_replaces_lists():
    patched = strategic_merge_patch({"kind": "Widget", "items": [{"name": "a"}]},
                                    {"items": [{"name": "b"}]}, "Widget")
    assert patched["items"] == [{"name": "b"}]


@pytest.mark.parametrize("patch", [
    {"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}},
    {"spec": {"template": {"spec": {"containers": ["not-a-map"]}}}},
    {"metadata": {"$patch": "explode"}},
    {"metadata": {"$frobnicate": 1}},
    {"spec": {"strategy": {"type": "Recreate", "$retainKeys": "type"}}},
    {"spec": {"strategy": {"type": "Recreate", "$retainKeys": ["rollingUpdate"]}}},
    {"metadata": {"$setElementOrder/finalizers": "x"}},
    ["not", "a", "map"],
])
def test_bad_patches_are_refused(patch):
    with pytest.raises(PatchError):
        strategic_merge_patch(deployment(), patch, "Deployment")


# --- three-way merge (kubectl apply) -----------------------------------------------------------

def applied_manifest():
    d = deployment()
    del d["metadata"]["finalizers"]
    return d


def live(manifest):
    """What the server holds: the manifest plus server-set fields."""
    current = copy.deepcopy(manifest)
    current["metadata"]["uid"] = "u-1"
    current["spec"]["revisionHistoryLimit"] = 10
    pod_spec(current)["containers"][0]["imagePullPolicy"] = "Always"
    pod_spec(current)["dnsPolicy"] = "ClusterFirst"
    current["status"] = {"replicas": 2}
    return current


def apply(original, modified, current):
    patch = three_way_merge_patch(original, modified, current, "Deployment")
    return patch, strategic_merge_patch(current, patch, "Deployment")


def test_unchanged_file_gives_an_empty_patch():
    manifest = applied_manifest()
    assert three_way_merge_patch(manifest, manifest, live(manifest), "Deployment") == {}


def test_changed_image_is_set_and_server_fields_stay():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    pod_spec(modified)["containers"][0]["image"] = "nginx:1.27"
    patch, result = apply(original, modified, live(original))
    assert pod_spec(result)["containers"][0]["image"] == "nginx:1.27"
    assert pod_spec(result)["containers"][0]["imagePullPolicy"] == "Always"
    assert result["status"] == {"replicas": 2} and result["metadata"]["uid"] == "u-1"
    assert "args" not in str(patch)


def test_env_var_removed_from_the_file_is_removed_from_the_object():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    pod_spec(modified)["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    patch, result = apply(original, modified, live(original))
    assert pod_spec(result)["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert {"name": "B", "$patch": "delete"} in pod_spec(patch)["containers"][0]["env"]


def test_label_removed_from_the_file_becomes_null():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    del modified["metadata"]["labels"]["tier"]
    patch, result = apply(original, modified, live(original))
    assert patch["metadata"]["labels"] == {"tier": None}
    assert result["metadata"]["labels"] == {"app": "nginx"}


def test_field_set_by_someone_else_is_kept_unless_it_was_in_the_file():
    original = applied_manifest()
    current = live(original)
    current["metadata"]["labels"]["added-by-hand"] = "yes"
    patch, result = apply(original, copy.deepcopy(original), current)
    assert patch == {} and result["metadata"]["labels"]["added-by-hand"] == "yes"


def test_first_apply_over_an_existing_object_sets_but_never_deletes():
    manifest = applied_manifest()
    current = live(manifest)
    current["spec"]["replicas"] = 5
    patch, result = apply(None, manifest, current)
    assert patch == {"spec": {"replicas": 2}}
    assert result["spec"]["replicas"] == 2


def test_container_added_and_removed_with_order():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    pod_spec(modified)["containers"] = [{"name": "sidecar", "image": "busybox"}]
    patch, result = apply(original, modified, live(original))
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["sidecar"]
    assert pod_spec(patch)["$setElementOrder/containers"] == [{"name": "sidecar"}]


def test_strategy_switch_to_recreate_drops_rolling_update():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    modified["spec"]["strategy"] = {"type": "Recreate"}
    patch, result = apply(original, modified, live(original))
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_finalizer_removed_from_the_file():
    original = deployment()
    modified = copy.deepcopy(original)
    modified["metadata"]["finalizers"] = []
    current = live(original)
    current["metadata"]["finalizers"].append("server/kept")
    patch, result = apply(original, modified, current)
    assert result["metadata"]["finalizers"] == ["server/kept"]


def test_replaced_list_without_merge_key():
    original = applied_manifest()
    modified = copy.deepcopy(original)
    pod_spec(modified)["containers"][0]["args"] = ["-v"]
    patch, result = apply(original, modified, live(original))
    assert pod_spec(result)["containers"][0]["args"] == ["-v"]


def test_patch_as_kubectl_apply_sends_it():
    """The shape kubectl 1.32 sends after an env var was removed from the file."""
    current = deployment()
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
             "spec": {"template": {"spec": {
                 "$setElementOrder/containers": [{"name": "patch-demo-ctr"}],
                 "containers": [{"$setElementOrder/env": [{"name": "A"}],
                                 "env": [{"$patch": "delete", "name": "B"}],
                                 "name": "patch-demo-ctr"}]}}}}
    patched = strategic_merge_patch(current, patch, "Deployment")
    container = pod_spec(patched)["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["image"] == "nginx"
    assert "kubectl.kubernetes.io/last-applied-configuration" in patched["metadata"]["annotations"]
    assert "$setElementOrder/env" not in str(patched)


def test_new_list_item_keeps_no_directives():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "new", "image": "x", "$setElementOrder/env": [{"name": "E"}], "env": [{"name": "E", "value": "1"}]}]}}}}
    patched = strategic_merge_patch(deployment(), patch, "Deployment")
    assert pod_spec(patched)["containers"][1] == {"name": "new", "image": "x", "env": [{"name": "E", "value": "1"}]}


def test_volume_source_switch_without_history_uses_retain_keys():
    current = deployment()
    modified = copy.deepcopy(current)
    pod_spec(modified)["volumes"] = [{"name": "data", "configMap": {"name": "cfg"}}]
    patch = three_way_merge_patch(None, modified, current, "Deployment")
    assert pod_spec(patch)["volumes"][0]["$retainKeys"] == ["configMap", "name"]
    result = strategic_merge_patch(current, patch, "Deployment")
    assert pod_spec(result)["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]


def test_two_way_patch_as_kubectl_edit_sends_it():
    from pkube.api.patch import two_way_merge_patch
    original = deployment()
    edited = copy.deepcopy(original)
    pod_spec(edited)["containers"][0]["image"] = "nginx:2"
    del edited["metadata"]["labels"]["tier"]
    edited["spec"]["replicas"] = 4
    patch = two_way_merge_patch(original, edited, "Deployment")
    assert strategic_merge_patch(original, patch, "Deployment") == edited
    assert two_way_merge_patch(original, copy.deepcopy(original), "Deployment") == {}


def random_edit(rng, obj):
    """A copy of a deployment with a few random user edits (what kubectl edit/apply sees)."""
    obj = copy.deepcopy(obj)
    spec = pod_spec(obj)
    for _ in range(rng.randint(1, 4)):
        container = rng.choice(spec["containers"])
        action = rng.randrange(10)
        if action == 0:
            container["env"].append({"name": f"E{rng.randrange(100)}", "value": str(rng.randrange(9))})
            container["env"] = list({e["name"]: e for e in container["env"]}.values())
        elif action == 1 and container["env"]:
            container["env"].pop(rng.randrange(len(container["env"])))
        elif action == 2:
            container["image"] = f"nginx:{rng.randrange(9)}"
        elif action == 3:
            spec["containers"].append({"name": f"side{rng.randrange(100)}", "image": "busybox",
                                       "env": [], "ports": []})
            spec["containers"] = list({c["name"]: c for c in spec["containers"]}.values())
        elif action == 4 and len(spec["containers"]) > 1:
            spec["containers"].remove(container)
        elif action == 5:
            rng.shuffle(spec["containers"])
        elif action == 6:
            obj["metadata"]["labels"][rng.choice(["a", "b", "app"])] = str(rng.randrange(5))
        elif action == 7 and obj["metadata"]["labels"]:
            del obj["metadata"]["labels"][rng.choice(sorted(obj["metadata"]["labels"]))]
        elif action == 8:
            obj["metadata"]["finalizers"] = rng.sample(["x.io/a", "x.io/b", "x.io/c"], rng.randint(0, 3))
        else:
            container["args"] = [str(rng.randrange(5)) for _ in range(rng.randint(0, 3))]
    return obj


@pytest.mark.parametrize("seed", range(60))
def test_two_way_patch_round_trips_random_edits(seed):
    from pkube.api.patch import two_way_merge_patch
    rng = random.Random(seed)
    original = random_edit(rng, deployment())
    edited = random_edit(rng, original)
    patch = two_way_merge_patch(original, edited, "Deployment")
    assert strategic_merge_patch(original, patch, "Deployment") == edited, patch


@pytest.mark.parametrize("seed", range(40))
def test_three_way_apply_reaches_the_file_and_keeps_server_fields(seed):
    rng = random.Random(1000 + seed)
    last_applied = random_edit(rng, applied_manifest())
    current = live(last_applied)
    current["metadata"]["labels"]["server-side"] = "kept"
    new_file = random_edit(rng, last_applied)
    new_file["metadata"]["labels"].pop("server-side", None)
    result = strategic_merge_patch(current, three_way_merge_patch(last_applied, new_file, current, "Deployment"),
                                   "Deployment")
    for container in pod_spec(result)["containers"]:
        container.pop("imagePullPolicy", None)
    assert result["metadata"]["labels"].pop("server-side") == "kept"
    assert result["status"] == {"replicas": 2} and result["spec"]["revisionHistoryLimit"] == 10
    assert pod_spec(result)["containers"] == pod_spec(new_file)["containers"]
    assert result["metadata"]["labels"] == new_file["metadata"]["labels"]
