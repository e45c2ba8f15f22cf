"""A pod's status from what the kubelet observed: phase, conditions, container states."""

from __future__ import annotations

from pkube.kubelet.backoff import RestartBackoff
from pkube.kubelet.podstatus import ContainerView, pod_phase, pod_status, qos_class, without_times
from pkube.runtime.state import ContainerState

NOW = "2026-12-04T10:00:00Z"


def record(status="running", exit_code=0, oom=False, error="", cid="c1"):
    return ContainerState(id=cid, name=cid, image="busybox", image_id="abc", status=status, exit_code=exit_code,
                          oom_killed=oom, error=error, started_at="2026-12-04T09:59:00.000000000Z",
                          finished_at="2026-12-04T09:59:30.000000000Z" if status == "exited" else "0001-01-01T00:00:00Z")


def pod(policy="Always", containers=("app",), init=()):
    spec = {"restartPolicy": policy, "containers": [{"name": n, "image": "busybox"} for n in containers]}
    if init:
        spec["initContainers"] = [{"name": n, "image": "busybox"} for n in init]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec, "status": {}}


def view(name="app", **kwargs):
    return ContainerView(name=name, image="busybox", **kwargs)


def status_of(p, views, init_views=(), **kwargs):
    return pod_status(p, init_views=list(init_views), views=views, pod_ip="10.244.0.5", host_ip="192.0.2.2",
                      sandbox_ready=True, start_time=NOW, now=NOW, **kwargs)


def test_running_ready_container_makes_the_pod_running_and_ready():
    status = status_of(pod(), [view(current=record(), ready=True, started=True)])
    assert status["phase"] == "Running"
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Ready"] == "True" and ready["ContainersReady"] == "True" and ready["Initialized"] == "True"
    cs = status["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": "2026-12-04T09:59:00Z"}}
    assert cs["ready"] is True and cs["containerID"] == "pkube://c1"
    assert status["podIP"] == "10.244.0.5" and status["podIPs"] == [{"ip": "10.244.0.5"}]


def test_a_container_not_started_yet_is_container_creating_and_the_pod_pending():
    status = status_of(pod(), [view()])
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [app]"


def test_crash_loop_shows_waiting_with_the_last_exit_as_last_state_and_the_pod_running():
    crashed = record("exited", exit_code=1)
    status = status_of(pod(), [view(current=crashed, restart_count=3,
                                    waiting=("CrashLoopBackOff", "back-off 40s restarting failed container=app"))])
    cs = status["containerStatuses"][0]
    assert status["phase"] == "Running"
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 3 and cs["ready"] is False


def test_phases_follow_the_restart_policy():
    done, failed = record("exited", 0), record("exited", 2)
    assert pod_phase(pod("Never"), [], [view(current=done)]) == "Succeeded"
    assert pod_phase(pod("Never"), [], [view(current=failed)]) == "Failed"
    assert pod_phase(pod("OnFailure"), [], [view(current=done)]) == "Succeeded"
    assert pod_phase(pod("OnFailure", containers=("a", "b")), [],
                     [view("a", current=done), view("b", current=record())]) == "Running"


def test_oom_killed_and_start_errors_have_their_reasons():
    oom = status_of(pod("Never"), [view(current=record("exited", 137, oom=True))])
    assert oom["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"
    bad = status_of(pod("Never"), [view(current=record("exited", 127, error="exec: nope: not found"))])
    terminated = bad["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "StartError" and "not found" in terminated["message"]


def test_init_containers_gate_the_pod():
    p = pod(init=("setup",))
    running_init = status_of(p, [view()], [view("setup", current=record())])
    assert running_init["phase"] == "Pending"
    initialized = next(c for c in running_init["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and initialized["message"] == "containers with incomplete status: [setup]"
    assert running_init["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    done = status_of(p, [view(current=record(cid="c2"), ready=True)], [view("setup", current=record("exited", 0))])
    assert done["phase"] == "Running"
    assert done["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert pod_phase(pod("Never", init=("setup",)), [view("setup", current=record("exited", 1))], [view()]) == "Failed"


def test_qos_classes():
    def with_resources(*resources):
        return {"spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}}
    assert qos_class(with_resources({}, {})) == "BestEffort"
    assert qos_class(with_resources({"limits": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert qos_class(with_resources({"limits": {"cpu": "1", "memory": "1Gi"},
                                     "requests": {"cpu": "1000m", "memory": "1024Mi"}})) == "Guaranteed"
    assert qos_class(with_resources({"requests": {"cpu": "100m"}})) == "Burstable"
    assert qos_class(with_resources({"limits": {"cpu": "1", "memory": "1Gi"}}, {})) == "Burstable"


def test_a_condition_keeps_its_transition_time_while_its_status_holds():
    p = pod()
    first = status_of(p, [view(current=record(), ready=True)])
    p["status"] = first
    later = pod_status(p, init_views=[], views=[view(current=record(), ready=True)], pod_ip="10.244.0.5",
                       host_ip="192.0.2.2", sandbox_ready=True, start_time=NOW, now="2026-12-04T11:00:00Z")
    assert without_times(first) == without_times(later)
    assert [c["lastTransitionTime"] for c in later["conditions"]] == [NOW] * 5


def test_backoff_is_immediate_then_doubles_to_five_minutes_and_resets_after_ten_minutes_of_running():
    b = RestartBackoff()
    waits = []
    for t in range(0, 9):
        b.on_exit(exited_at=1000.0 * t, ran_for=1)
        waits.append(b.waiting(1000.0 * t))
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    b.on_exit(exited_at=50_000, ran_for=601)
    assert b.waiting(50_000) == 0
