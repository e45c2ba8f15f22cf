"""PodDisruptionBudget arithmetic (pkube/api/disruption.py, pkube/controllers/disruption.py) and the
eviction's budget decision (pkube/apiserver/eviction.py), without an apiserver."""

import datetime as dt

import pytest

from pkube.api.disruption import scaled_value
from pkube.apiserver import errors
from pkube.apiserver.eviction import decremented
from pkube.controllers.disruption import NoController, budget_counts, current_healthy, kept_disruptions, new_status

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
STAMP = "2026-01-01T12:00:00Z"


def pod(name, ready=True, deleting=False):
    md = {"name": name, **({"deletionTimestamp": STAMP} if deleting else {})}
    return {"metadata": md, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(generation=1, **spec):
    return {"metadata": {"name": "b", "generation": generation}, "spec": spec}


@pytest.mark.parametrize("value, total, up, expected", [(3, 10, True, 3), ("50%", 5, True, 3),
                                                        ("50%", 5, False, 2), ("0%", 5, True, 0)])
def test_scaled_value(value, total, up, expected):
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize("spec, expected, desired", [
    ({"minAvailable": 2}, 3, 2),              # an int: of the matched pods
    ({"minAvailable": "50%"}, 5, 3),          # a percent of the controllers' scale, rounded up
    ({"maxUnavailable": 1}, 5, 4),
    ({"maxUnavailable": "30%"}, 5, 3),        # 30% of 5 rounds up to 2 unavailable
    ({"maxUnavailable": 9}, 5, 0),
])
def test_budget_counts(spec, expected, desired):
    counts = budget_counts(pdb(**spec), [pod("a"), pod("b"), pod("c")], lambda pods: 5)
    assert (counts.expected, counts.desired_healthy) == (expected, desired)


def test_percentages_need_controllers():
    def no_controller(pods):
        raise NoController('found no controller ref for pod "a"')
    with pytest.raises(NoController):
        budget_counts(pdb(maxUnavailable=1), [pod("a")], no_controller)
    assert budget_counts(pdb(minAvailable=1), [pod("a")], no_controller).expected == 1


def test_healthy_skips_unready_deleting_and_just_evicted_pods():
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True), pod("d"), pod("e")]
    budget = pdb(minAvailable=1)
    budget["status"] = {"disruptedPods": {"d": "2026-01-01T11:59:30Z", "e": "2026-01-01T11:50:00Z",
                                          "c": "2026-01-01T11:59:30Z"}}
    kept, recheck = kept_disruptions(budget, pods, NOW)
    assert kept == {"d": "2026-01-01T11:59:30Z"}
    assert recheck == NOW + dt.timedelta(seconds=90)
    assert current_healthy(pods, kept) == 2        # a and e


def test_new_status_never_allows_below_zero_or_without_expected_pods():
    budget = pdb(minAvailable=3)
    status = new_status(budget, budget_counts(budget, [pod("a")], lambda p: 0), 1, {}, STAMP)
    assert status["disruptionsAllowed"] == 0 and status["conditions"][0]["reason"] == "InsufficientPods"
    status = new_status(budget, budget_counts(pdb(minAvailable=1), [pod("a"), pod("b")], lambda p: 0), 2, {}, STAMP)
    assert status["disruptionsAllowed"] == 1 and status["conditions"][0]["status"] == "True"


def budget_with(allowed, healthy=3, desired=2, generation=1, observed=1, **spec):
    budget = pdb(generation, **spec)
    budget["status"] = {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                        "observedGeneration": observed}
    return budget


def test_eviction_spends_one_disruption_and_records_the_pod():
    spent = decremented(budget_with(1), pod("a"), STAMP)
    assert spent["status"]["disruptionsAllowed"] == 0 and spent["status"]["disruptedPods"] == {"a": STAMP}
    assert spent["status"]["conditions"][0]["reason"] == "InsufficientPods"


def test_eviction_refusals():
    with pytest.raises(errors.ApiError) as refused:
        decremented(budget_with(0), pod("a"), STAMP)
    assert refused.value.code == 429
    assert refused.value.details["causes"][0]["message"] == "The disruption budget b needs 2 healthy pods and has 3 currently"
    with pytest.raises(errors.ApiError) as stale:
        decremented(budget_with(1, generation=2), pod("a"), STAMP)
    assert stale.value.code == 429 and stale.value.details["retryAfterSeconds"] == 10
    with pytest.raises(errors.ApiError) as negative:
        decremented(budget_with(-1), pod("a"), STAMP)
    assert negative.value.code == 403


def test_an_unready_pod_goes_free_while_the_budget_is_healthy():
    unready = pod("a", ready=False)
    assert "disruptedPods" not in decremented(budget_with(0), unready, STAMP)["status"]
    with pytest.raises(errors.ApiError):
        decremented(budget_with(0, healthy=1), unready, STAMP)
    assert "disruptedPods" not in decremented(budget_with(0, healthy=1, unhealthyPodEvictionPolicy="AlwaysAllow"),
                                              unready, STAMP)["status"]
