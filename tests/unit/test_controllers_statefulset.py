"""Pure logic of the StatefulSet controller and of the ControllerRevision history: ordinals,
identity, claims and their owners, the rolling-update step, status, revision hashing."""

import datetime as dt

from pkube.controllers import history
from pkube.controllers import statefulset as s

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def sts(replicas=3, **spec):
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 2},
            "spec": {"replicas": replicas, "serviceName": "web-svc", "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "i"}],
                                           "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                                               "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
                     **spec}}


def revision(owner, number, name=None):
    rev = history.new_revision(owner, number)
    rev["metadata"].update(uid=f"rev-{number}", name=name or rev["metadata"]["name"], resourceVersion="1")
    return rev


def pod(name, rev="web-new", ready=True, deleting=False, phase="Running"):
    meta = {"name": name, "namespace": "default", "labels": {history.HASH_LABEL: rev}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ordinals_members_and_the_split_of_pods():
    assert s.parent_and_ordinal(pod("web-12")) == ("web", 12)
    assert s.parent_and_ordinal(pod("web")) == (None, -1)
    assert s.is_member(sts(), pod("web-0")) and not s.is_member(sts(), pod("web-x-0"))
    assert list(s.ordinals(sts(2, ordinals={"start": 5}))) == [5, 6]
    replicas, condemned = s.split_pods(sts(2), [pod("web-0"), pod("web-3"), pod("web-2"), pod("web-1")])
    assert sorted(replicas) == [0, 1]
    assert [p["metadata"]["name"] for p in condemned] == ["web-3", "web-2"]


def test_new_pod_has_identity_labels_and_its_claim_volume():
    the_sts = sts()
    made = s.new_pod(the_sts, 1, revision(the_sts, 1, "web-abc"))
    assert made["metadata"]["name"] == "web-1"
    assert made["metadata"]["labels"] == {"app": "web", s.POD_NAME_LABEL: "web-1", s.POD_INDEX_LABEL: "1",
                                          history.HASH_LABEL: "web-abc"}
    assert made["spec"]["hostname"] == "web-1" and made["spec"]["subdomain"] == "web-svc"
    assert made["spec"]["volumes"] == [{"name": "cfg", "emptyDir": {}},
                                       {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]
    assert made["metadata"]["ownerReferences"][0]["controller"] is True


def test_claims_carry_the_selector_labels_and_owners_by_retention_policy():
    the_sts = sts()
    (claim,) = s.new_claims(the_sts, 2)
    assert claim["metadata"]["name"] == "data-web-2"
    assert claim["metadata"]["labels"] == {"tier": "db", "app": "web"}
    assert "ownerReferences" not in claim["metadata"]
    deleting = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
    (claim,) = s.new_claims(deleting, 2)
    assert [(r["kind"], r["uid"]) for r in claim["metadata"]["ownerReferences"]] == [("StatefulSet", "sts-uid")]


def test_claim_owner_refs_follow_upstream_for_scaled_away_pods():
    condemned = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-4", "uid": "pod-uid"}}
    other = {"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "x"}
    both = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"})
    refs = s.claim_owner_refs(both, [other, {"kind": "StatefulSet", "uid": "sts-uid"}], condemned)
    assert [r["uid"] for r in refs] == ["x", "pod-uid"]
    stale = {"kind": "Pod", "name": "web-4", "uid": "old-pod"}
    assert [r["uid"] for r in s.claim_owner_refs(both, [stale], None)] == ["sts-uid"]
    assert s.claim_owner_refs(sts(), [stale], condemned) == []          # Retain / Retain


def test_revision_for_new_pods_honours_the_partition():
    the_sts = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    current, update = {"name": "current"}, {"name": "update"}
    assert [s.revision_for(the_sts, o, current, update)["name"] for o in range(4)] == \
        ["current", "current", "update", "update"]
    on_delete = sts(updateStrategy={"type": "OnDelete"})
    assert s.revision_for(on_delete, 0, current, update) is update


def test_rolling_update_step_goes_from_the_highest_ordinal_and_waits_for_health():
    the_sts = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    replicas = {0: pod("web-0", "old"), 1: pod("web-1", "old"), 2: pod("web-2", "old")}
    victim, wait = s.rolling_update_step(the_sts, replicas, "web-new")
    assert victim["metadata"]["name"] == "web-2" and not wait
    replicas[2] = pod("web-2", "web-new", ready=False)
    assert s.rolling_update_step(the_sts, replicas, "web-new") == (None, True)
    replicas[2] = pod("web-2", "web-new")
    assert s.rolling_update_step(the_sts, replicas, "web-new")[0]["metadata"]["name"] == "web-1"
    replicas[1] = pod("web-1", "web-new")
    assert s.rolling_update_step(the_sts, replicas, "web-new") == (None, False)   # web-0 is below the partition


def test_status_counts_revisions_and_completes_the_rollout():
    the_sts = sts(updateStrategy={"type": "RollingUpdate"})
    current = {"metadata": {"name": "web-old"}}
    update = {"metadata": {"name": "web-new"}}
    pods = [pod("web-0", "web-old"), pod("web-1", "web-new"), pod("web-2", "web-new", ready=False)]
    status, _ = s.statefulset_status(the_sts, pods, current, update, NOW)
    assert status == {"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "availableReplicas": 2,
                      "currentReplicas": 1, "updatedReplicas": 2, "currentRevision": "web-old",
                      "updateRevision": "web-new"}
    done, _ = s.statefulset_status(the_sts, [pod("web-0", "web-new"), pod("web-1", "web-new")], current, update, NOW)
    assert done["currentRevision"] == "web-new" and done["currentReplicas"] == 2


def test_revision_hash_is_stable_and_ignores_the_hash_label():
    a, b = sts(), sts()
    b["spec"]["template"]["metadata"]["labels"][history.HASH_LABEL] = "whatever"
    assert history.revision_hash(a) == history.revision_hash(b)
    c = sts()
    c["spec"]["template"]["spec"]["containers"][0]["image"] = "j"
    assert history.revision_hash(a) != history.revision_hash(c)
    c["status"] = {"collisionCount": 1}
    c2 = sts()
    c2["spec"]["template"]["spec"]["containers"][0]["image"] = "j"
    assert history.revision_hash(c) != history.revision_hash(c2)


def test_revision_holds_the_patch_kubectl_undo_sends():
    the_sts = sts()
    the_sts["metadata"]["annotations"] = {history.CHANGE_CAUSE: "kubectl set image"}
    rev = history.new_revision(the_sts, 4)
    digest = history.revision_hash(the_sts)
    assert rev["metadata"]["name"] == f"web-{digest}"
    assert rev["metadata"]["labels"] == {"app": "web", history.HASH_LABEL: digest}
    assert rev["metadata"]["annotations"] == {history.CHANGE_CAUSE: "kubectl set image"}
    assert rev["revision"] == 4
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert history.revision_template(rev) == the_sts["spec"]["template"]
    assert history.same_template(rev, the_sts)
