"""The HorizontalPodAutoscaler's arithmetic (pkube/controllers/horizontal_replicas.py): the replica
calculator's tolerance, unready and missing pods, stabilisation windows, behavior policies."""

import pytest

from pkube.controllers.horizontal import pod_request, pod_usage
from pkube.controllers.horizontal_replicas import (History, MetricsError, PodView, Sample, default_limited,
                                             rate_limited, resource_replicas, stabilized)

NOW = 10_000.0
OLD = NOW - 3600          # started and Ready long ago


def ready(name, request=100):
    return PodView(name, ready=True, ready_since=OLD, started=OLD, request=request)


def samples(**values):
    return {name: Sample(value, at=NOW - 5, window=10) for name, value in values.items()}


def test_utilization_scales_up_by_the_usage_ratio():
    pods = [ready("a"), ready("b")]
    proposal = resource_replicas(2, pods, samples(a=90, b=110), True, NOW, target_utilization=50)
    assert (proposal.replicas, proposal.utilization, proposal.average) == (4, 100, 100)


@pytest.mark.parametrize("usage, expected", [(54, 2), (46, 2), (56, 3), (40, 2), (30, 2), (20, 1)])
def test_within_tolerance_the_count_stays(usage, expected):
    pods = [ready("a"), ready("b")]
    assert resource_replicas(2, pods, samples(a=usage, b=usage), True, NOW, target_utilization=50).replicas == expected


def test_average_value_target():
    pods = [ready("a", None), ready("b", None)]
    proposal = resource_replicas(2, pods, samples(a=300, b=300), False, NOW, target_average=200)
    assert (proposal.replicas, proposal.utilization, proposal.average) == (3, None, 300)


def test_unready_pods_count_as_idle_on_a_scale_up():
    pods = [ready("a"), ready("b"), PodView("c", phase="Pending", request=100)]
    # ratio 2.0 over the ready pods; with the pending one at 0 the ratio is 4/3 -> ceil(1.33*3) = 4
    assert resource_replicas(3, pods, samples(a=100, b=100), True, NOW, target_utilization=50).replicas == 4


def test_missing_metrics_count_as_their_request_on_a_scale_down():
    pods = [ready("a"), ready("b"), ready("c")]
    # a and b at 10% of a 50% target; c (no sample) as 100%: 120/300 = 40% -> ratio 0.8 -> 3 * 0.8 = 3
    assert resource_replicas(3, pods, samples(a=10, b=10), True, NOW, target_utilization=50).replicas == 3


def test_a_recount_that_flips_direction_keeps_the_count():
    pods = [ready("a"), ready("b"), ready("c"), ready("d")]
    # ratio 0.9 from a and b... then c and d missing at 100% make it 1.45: hold
    assert resource_replicas(4, pods, samples(a=45, b=45), True, NOW, target_utilization=50).replicas == 4


def test_cpu_of_a_pod_just_started_and_not_ready_is_left_out():
    young = PodView("y", ready=False, ready_since=NOW - 10, started=NOW - 20, request=100)
    pods = [ready("a"), young]
    proposal = resource_replicas(2, pods, samples(a=100, y=500), True, NOW, target_utilization=100)
    assert proposal.utilization == 100 and proposal.replicas == 2


def test_errors():
    with pytest.raises(MetricsError, match="no pods returned by selector"):
        resource_replicas(1, [], {}, True, NOW, target_utilization=50)
    with pytest.raises(MetricsError, match="did not receive metrics"):
        resource_replicas(1, [ready("a")], {}, True, NOW, target_utilization=50)
    with pytest.raises(MetricsError, match="missing request"):
        resource_replicas(1, [ready("a", None)], samples(a=1), True, NOW, target_utilization=50)


def test_scale_down_waits_for_the_stabilization_window():
    history = History(recommendations=[(NOW - 100, 5)])
    assert stabilized(history, NOW, 2, 5, 0, 300)[:2] == (5, "ScaleDownStabilized")
    assert stabilized(history, NOW + 150, 2, 5, 0, 300)[0] == 5
    assert stabilized(history, NOW + 401, 2, 5, 0, 300) == (2, "ReadyForNewScale", "recommended size matches current size")


def test_window_zero_scales_down_at_once_and_scale_up_window_holds_ups():
    history = History(recommendations=[(NOW - 1, 5)])
    assert stabilized(history, NOW, 2, 5, 0, 0)[0] == 2
    history = History(recommendations=[(NOW - 10, 2)])
    assert stabilized(history, NOW, 6, 2, 60, 0)[:2] == (2, "ScaleUpStabilized")


DEFAULT_UP = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                  {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def test_scale_up_policies_take_the_larger_limit_and_count_recent_changes():
    behavior = {"scaleUp": DEFAULT_UP, "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    history = History()
    assert rate_limited(history, NOW, 2, 20, 1, 30, behavior) == (
        6, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
    assert rate_limited(history, NOW, 10, 50, 1, 30, behavior)[0] == 20
    history.record(NOW, 2, 6, 60)
    # 4 added within the period: the period started at 2, so at most 6 (Pods 2+4, Percent 2*2)
    assert rate_limited(history, NOW + 5, 6, 20, 1, 30, behavior)[0] == 6
    assert rate_limited(history, NOW + 16, 6, 20, 1, 30, behavior)[0] == 12
    assert rate_limited(history, NOW + 16, 6, 8, 1, 30, behavior) == (
        8, "DesiredWithinRange", "the desired count is within the acceptable range")


def test_scale_down_policy_and_bounds():
    behavior = {"scaleUp": DEFAULT_UP, "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    assert rate_limited(History(), NOW, 5, 1, 1, 10, behavior)[:2] == (4, "ScaleDownLimit")
    assert rate_limited(History(), NOW, 5, 1, 1, 10, {"scaleDown": {"selectPolicy": "Disabled"}})[0] == 5
    assert rate_limited(History(), NOW, 5, 20, 1, 7, behavior)[:2] == (7, "TooManyReplicas")
    percent = {"scaleDown": {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}}
    assert rate_limited(History(), NOW, 5, 1, 1, 10, percent)[0] == 2


def test_without_behavior_at_most_double_or_four():
    assert default_limited(1, 10, 1, 10)[:2] == (4, "ScaleUpLimit")
    assert default_limited(3, 10, 1, 10)[0] == 6
    assert default_limited(3, 10, 1, 5)[:2] == (5, "TooManyReplicas")
    assert default_limited(3, 0, 1, 5)[:2] == (1, "TooFewReplicas")


def test_requests_and_usage_from_the_api_shapes():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
        {"name": "b", "resources": {"requests": {"cpu": "0.1"}}}]}}
    assert pod_request(pod, "cpu") == 150
    assert pod_request(pod, "memory") is None
    metrics = [{"metadata": {"name": "p"}, "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
                "containers": [{"name": "a", "usage": {"cpu": "25000000n", "memory": "1024Ki"}},
                               {"name": "b", "usage": {"cpu": "1m", "memory": "0Ki"}}]}]
    usage = pod_usage(metrics, "cpu")
    assert usage["p"].value == 26 and usage["p"].window == 10
    assert pod_usage(metrics, "memory")["p"].value == 1024 * 1024


def test_container_resource_reads_one_container():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "app", "resources": {"requests": {"cpu": "100m"}}}, {"name": "sidecar"}]}}
    assert pod_request(pod, "cpu") is None                 # the sidecar has no request
    assert pod_request(pod, "cpu", "app") == 100
    assert pod_request(pod, "cpu", "ghost") is None
    metrics = [{"metadata": {"name": "p"}, "containers": [{"name": "app", "usage": {"cpu": "80m"}},
                                                          {"name": "sidecar", "usage": {"cpu": "500m"}}]}]
    assert pod_usage(metrics, "cpu", "app")["p"].value == 80
    assert pod_usage(metrics, "cpu")["p"].value == 580
