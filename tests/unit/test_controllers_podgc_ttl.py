"""Pure parts of the pod garbage collector and of the TTL-after-finished controller."""

import datetime as dt

from pkube.controllers.podgc import (disruption_status, pods_on_missing_nodes, terminated_to_delete,
                               unscheduled_terminating)
from pkube.controllers.ttlafterfinished import seconds_until_expiry

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def pod(name, phase="Running", node="n1", created="2026-03-01T10:00:00Z", deleting=False):
    meta = {"name": name, "namespace": "default", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


def test_terminated_pods_beyond_the_threshold_go_oldest_first():
    pods = [pod(f"t{i}", "Succeeded" if i % 2 else "Failed", created=f"2026-03-01T10:0{i}:00Z") for i in range(6)]
    pods.append(pod("running", created="2026-03-01T09:00:00Z"))
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 4)] == ["t0", "t1"]
    assert terminated_to_delete(pods, 6) == []
    assert terminated_to_delete(pods, 0) == []             # 0 turns it off


def test_pods_of_missing_nodes_are_grouped_by_node():
    pods = [pod("a", node="gone"), pod("b", node="n1"), pod("c", node="gone", deleting=True), pod("d", node=None)]
    missing = pods_on_missing_nodes(pods, {"n1"})
    assert list(missing) == ["gone"] and [p["metadata"]["name"] for p in missing["gone"]] == ["a", "c"]


def test_unscheduled_terminating_pods_are_collected():
    pods = [pod("a", node=None, deleting=True), pod("b", node=None), pod("c", deleting=True)]
    assert [p["metadata"]["name"] for p in unscheduled_terminating(pods)] == ["a"]


def test_orphans_are_marked_failed_with_a_disruption_target():
    patch = disruption_status(pod("a"), NOW)["status"]
    assert patch["phase"] == "Failed"
    assert patch["conditions"][-1]["type"] == "DisruptionTarget"
    assert patch["conditions"][-1]["reason"] == "DeletionByPodGC"
    assert "phase" not in disruption_status(pod("b", "Succeeded"), NOW)["status"]


def job(ttl, condition=None, completion=None):
    status = {}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True", "lastTransitionTime": "2026-03-01T11:59:00Z"}]
    if completion:
        status["completionTime"] = completion
    spec = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {"metadata": {"name": "j"}, "spec": spec, "status": status}


def test_ttl_counts_from_the_completion_time_or_the_failure():
    assert seconds_until_expiry(job(100, "Complete", "2026-03-01T11:59:30Z"), NOW) == 70
    assert seconds_until_expiry(job(100, "Failed"), NOW) == 40
    assert seconds_until_expiry(job(0, "Failed"), NOW) == -60


def test_no_ttl_or_a_running_job_never_expires():
    assert seconds_until_expiry(job(None, "Complete", "2026-03-01T11:59:30Z"), NOW) is None
    assert seconds_until_expiry(job(10), NOW) is None
