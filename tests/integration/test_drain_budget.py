"""`pkubectl drain` and the real `kubectl drain` against a PodDisruptionBudget on a real
apiserver: held back with 429 and kubectl's retry line, timing out with kubectl's error, and
finishing once the budget allows the eviction. The budget's status is written by the test (the
disruption controller's part is tested in test_disruption_eviction.py)."""

from __future__ import annotations

import threading

import pytest

from tests.integration.test_pkubectl_nodes import PODS, StandInKubelet, cli  # noqa: F401 - the fixture
from tests.integration.test_pkubectl_workloads import needs_kubectl

PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
RETRY_LINE = ('error when evicting pods/"web-1" -n "default" (will retry after 5s): '
              "Cannot evict pod as it would violate the pod's disruption budget.")


def _running_pod(cli, name: str) -> None:
    meta = {"name": name, "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs",
                                 "uid": "uid-web", "controller": True}]}
    spec = {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}
    cli.http.post(PODS, json={"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}).raise_for_status()
    cli.http.patch(f"{PODS}/{name}/status", headers={"Content-Type": "application/merge-patch+json"},
                   json={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
                   ).raise_for_status()


def _budget(cli, allowed: int) -> None:
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    if cli.http.get(f"{PDBS}/web").status_code == 404:
        cli.http.post(PDBS, json=body).raise_for_status()
    cli.http.patch(f"{PDBS}/web/status", headers={"Content-Type": "application/merge-patch+json"},
                   json={"status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 1,
                                    "desiredHealthy": 1, "expectedPods": 1}}).raise_for_status()


@pytest.mark.parametrize("tool", ["pk", pytest.param("kubectl", marks=needs_kubectl)])
def test_drain_is_held_back_by_the_budget_until_the_timeout(cli, tool):  # noqa: F811
    _running_pod(cli, "web-1")
    _budget(cli, 0)
    code, out, err = getattr(cli, tool)("drain", "n1", "--timeout=7s")
    assert code == 1
    assert out == "node/n1 cordoned\n" + "evicting pod default/web-1\n" * 3
    timeout = 'error when evicting pods/"web-1" -n "default": global timeout reached: 7s'
    assert err == (f"{RETRY_LINE}\n{RETRY_LINE}\n"
                   f'There are pending pods in node "n1" when an error occurred: {timeout}\npod/web-1\n'
                   f'error: unable to drain node "n1" due to error: {timeout}, continuing command...\n'
                   f"There are pending nodes to be drained:\n n1\n{timeout}\n")
    assert not cli.get(f"{PODS}/web-1")["metadata"].get("deletionTimestamp")


@needs_kubectl
def test_kubectl_and_pkubectl_drain_finish_once_the_budget_allows(cli):  # noqa: F811
    for tool in (cli.kubectl, cli.pk):
        _running_pod(cli, "web-1")
        _budget(cli, 0)
        relax = threading.Timer(2.0, _budget, (cli, 1))
        relax.start()
        try:
            with StandInKubelet(cli):
                code, out, err = tool("drain", "n1", "--timeout=60s")
        finally:
            relax.cancel()
        assert code == 0, err
        assert RETRY_LINE in err.splitlines()
        assert out.splitlines()[-2:] == ["pod/web-1 evicted", "node/n1 drained"]
        assert cli.http.get(f"{PODS}/web-1").status_code == 404
        cli.pk("uncordon", "n1")
