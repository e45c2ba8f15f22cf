"""Deployment arithmetic without an apiserver: hashes, rounding, rollout steps, conditions."""

import datetime as dt

import pytest

from pkube.controllers import deployment_util as du
from pkube.controllers.deployment import proportional

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def deploy(replicas=10, surge="25%", unavailable="25%", generation=1, **spec):
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": generation},
            "apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}, **spec}}


def rs(name, replicas, available=None, created="2026-01-01T00:00:00Z"):
    available = replicas if available is None else available
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas, "availableReplicas": available,
                                                        "readyReplicas": available}}


@pytest.mark.parametrize("surge,unavailable,replicas,expected", [
    ("25%", "25%", 10, (3, 2)),      # surge rounds up, unavailable down
    ("10%", "10%", 5, (1, 0)),
    (0, 0, 3, (0, 1)),                # both zero: one may be unavailable
    ("0%", "0%", 3, (0, 1)),
    (2, "50%", 3, (2, 1)),
    ("100%", 0, 4, (4, 0)),
])
def test_fenceposts_round_like_kubernetes(surge, unavailable, replicas, expected):
    assert du.resolve_fenceposts(surge, unavailable, replicas) == expected


def test_bad_int_or_string_is_refused():
    with pytest.raises(ValueError, match="percentage"):
        du.resolve_fenceposts("lots", 1, 3)


def test_template_hash_is_stable_safe_and_ignores_its_own_label():
    template = deploy()["spec"]["template"]
    h = du.pod_template_hash(template)
    assert h == du.pod_template_hash({"spec": {"containers": []}, "metadata": {"labels": {"app": "web"}}})
    assert set(h) <= set(du.SAFE_ALPHABET) and 1 <= len(h) <= 10
    labelled = {"metadata": {"labels": {"app": "web", du.HASH_LABEL: h}}, "spec": {"containers": []}}
    assert du.pod_template_hash(labelled) == h and du.templates_equal(labelled, template)
    assert du.pod_template_hash(template, collision_count=1) != h
    assert du.fnv32a(b"hello") == 0x4F9F2CAB


def test_new_rs_grows_only_within_max_surge():
    d = deploy(replicas=10, surge=3, unavailable=2)
    old = rs("old", 10)
    assert du.new_rs_replicas(d, [old], None) == 3
    assert du.new_rs_replicas(d, [old, rs("new", 3, 0)], rs("new", 3, 0)) == 3   # at the ceiling
    assert du.new_rs_replicas(d, [rs("old", 7), rs("new", 3)], rs("new", 3)) == 6


def test_old_scale_down_keeps_min_available():
    d = deploy(replicas=10, surge=3, unavailable=2)
    new = rs("new", 3, available=0)
    # 13 pods, 8 must stay available, 3 new ones not available yet: 2 old may go.
    assert du.old_scale_down_budget(d, [rs("old", 10), new], new) == 2
    assert du.available_surplus(d, [rs("old", 10), new]) == 2


def test_status_and_conditions_read_by_rollout_status():
    d = deploy(replicas=3, surge=1, unavailable=0, progressDeadlineSeconds=60)
    new = rs("new", 3)
    status = du.deployment_status(d, [rs("old", 0), new], new)
    assert status == {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                      "availableReplicas": 3, "unavailableReplicas": 0}
    assert du.complete(d, status)
    cond = du.progressing_condition(d, status, {}, {"metadata": {"name": "web-abc"}}, NOW, moved=False)
    assert cond["reason"] == "NewReplicaSetAvailable" and cond["status"] == "True"


def test_progress_deadline_passes_without_progress():
    d = deploy(replicas=2, surge=1, unavailable=0, progressDeadlineSeconds=60)
    new = rs("new", 1, available=0)
    status = du.deployment_status(d, [rs("old", 2), new], new)
    started = du.progressing_condition(d, status, {}, new, NOW, moved=True)
    assert started["reason"] == "ReplicaSetUpdated"
    old = {"conditions": [started]}
    later = NOW + dt.timedelta(seconds=30)
    assert du.progressing_condition(d, status, old, new, later, moved=False) is started
    late = du.progressing_condition(d, status, old, new, NOW + dt.timedelta(seconds=61), moved=False)
    assert (late["status"], late["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert late["message"] == 'ReplicaSet "new" has timed out progressing.'


def test_proportional_scaling_gives_the_rounding_rest_to_the_new_rs():
    old, new = rs("old", 6), rs("new", 4)
    assert [(r["metadata"]["name"], n) for r, n in proportional([old, new], 15, new)] == [("old", 9), ("new", 6)]
    assert [n for _, n in proportional([old, new], 5, new)] == [3, 2]
