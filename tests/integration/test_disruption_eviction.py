"""PodDisruptionBudgets and the eviction subresource on a real apiserver: the disruption
controller's status, 201/429/500 evictions with Kubernetes' messages, dryRun, pods that go
regardless, and validation."""

import httpx

from pkube.client.resources import DEPLOYMENTS, PODDISRUPTIONBUDGETS, PODS
from tests.helpers.waiting import until
from tests.integration.test_controllers_support import with_controllers

PDB_PATH = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
BLOCKED = "Cannot evict pod as it would violate the pod's disruption budget."


def deployment(name, replicas):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def budget(name, app, **spec):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


def eviction(pod, **delete_options):
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def evict(url, pod, **delete_options) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post(f"/api/v1/namespaces/default/pods/{pod}/eviction", json=eviction(pod, **delete_options))


async def live_pods(client, app):
    pods = (await client.list(PODS, "default", label_selector=f"app={app}"))["items"]
    return sorted((p for p in pods if not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])


async def settled_budget(client, name, **expected):
    async def check():
        pdb = await client.get(PODDISRUPTIONBUDGETS, name, "default")
        status = pdb.get("status") or {}
        wanted = all(status.get(k) == v for k, v in expected.items())
        return wanted and status.get("observedGeneration") == pdb["metadata"]["generation"] and pdb
    return await until(check)


def test_budget_status_then_evictions_201_then_429(apiserver):
    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("web", 3), "default")
        await client.create(PODDISRUPTIONBUDGETS, budget("web-pdb", "web", minAvailable=2), "default")
        pdb = await settled_budget(client, "web-pdb", currentHealthy=3, expectedPods=3, disruptionsAllowed=1)
        assert pdb["status"]["desiredHealthy"] == 2
        allowed = next(c for c in pdb["status"]["conditions"] if c["type"] == "DisruptionAllowed")
        assert (allowed["status"], allowed["reason"]) == ("True", "SufficientPods")

        first, second = (p["metadata"]["name"] for p in (await live_pods(client, "web"))[:2])
        scenario.kubelet.hold_all = True    # the replacement stays unready until the test says so
        response = await evict(apiserver.url, first)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "Success"
        spent = await client.get(PODDISRUPTIONBUDGETS, "web-pdb", "default")
        assert spent["status"]["disruptionsAllowed"] == 0 and first in spent["status"]["disruptedPods"]

        response = await evict(apiserver.url, second)
        assert response.status_code == 429, response.text
        status = response.json()
        assert status["reason"] == "TooManyRequests" and status["message"] == BLOCKED
        assert status["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                                "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]
        assert (await client.get(PODS, second, "default"))["metadata"].get("deletionTimestamp") is None

        # the replacement becomes Ready: the budget allows one disruption again
        scenario.kubelet.hold_all = False
        for pod in await live_pods(client, "web"):
            if (pod.get("status") or {}).get("phase") != "Running":
                await scenario.kubelet.mark_ready(pod)
        await settled_budget(client, "web-pdb", currentHealthy=3, disruptionsAllowed=1)
        assert (await evict(apiserver.url, second)).status_code == 201
    with_controllers(apiserver, scenario, names=("replicaset", "deployment", "disruption"))


def test_max_unavailable_percent_counts_the_deployment_scale(apiserver):
    async def scenario(client):
        scenario.kubelet.hold.add("never")
        await client.create(DEPLOYMENTS, deployment("api", 4), "default")
        await client.create(PODDISRUPTIONBUDGETS, budget("api-pdb", "api", maxUnavailable="30%"), "default")
        pdb = await settled_budget(client, "api-pdb", currentHealthy=4, expectedPods=4)
        assert (pdb["status"]["desiredHealthy"], pdb["status"]["disruptionsAllowed"]) == (2, 2)
        # an unmanaged pod under a percentage budget: the budget fails safe
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": "never", "labels": {"app": "api"}},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, "default")
        pdb = await settled_budget(client, "api-pdb", disruptionsAllowed=0)
        allowed = next(c for c in pdb["status"]["conditions"] if c["type"] == "DisruptionAllowed")
        assert (allowed["status"], allowed["reason"]) == ("False", "SyncFailed")
        assert 'found no controller ref for pod "never"' in allowed["message"]
    with_controllers(apiserver, scenario, names=("replicaset", "deployment", "disruption"))


def test_pods_that_are_not_running_go_regardless_and_dry_run_changes_nothing(apiserver, http):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    assert http.post(PDB_PATH, json=budget("x-pdb", "x", minAvailable=5)).status_code == 201
    http.patch("/api/v1/namespaces/default/pods/p/status", json={"status": {"phase": "Running"}},
               headers={"Content-Type": "application/merge-patch+json"})
    # a Running pod under a budget whose status is not computed yet: 429, retry later
    response = http.post("/api/v1/namespaces/default/pods/p/eviction", json=eviction("p"))
    assert response.status_code == 429 and response.json()["message"] == BLOCKED
    assert response.json()["details"]["causes"][0]["message"] == \
        "The disruption budget x-pdb is still being processed by the server."
    http.patch("/api/v1/namespaces/default/pods/p/status", json={"status": {"phase": "Pending"}},
               headers={"Content-Type": "application/merge-patch+json"})
    response = http.post("/api/v1/namespaces/default/pods/p/eviction", json=eviction("p", dryRun=["All"]))
    assert response.status_code == 201
    kept = http.get("/api/v1/namespaces/default/pods/p").json()
    assert "deletionTimestamp" not in kept["metadata"]
    assert all(c["type"] != "DisruptionTarget" for c in kept["status"].get("conditions") or [])

    stale = eviction("p", preconditions={"resourceVersion": "1"})
    response = http.post("/api/v1/namespaces/default/pods/p/eviction", json=stale)
    assert response.status_code == 409 and "Precondition failed" in response.json()["message"]
    response = http.post("/api/v1/namespaces/default/pods/p/eviction", json=eviction("p", gracePeriodSeconds=0))
    assert response.status_code == 201, response.text
    assert http.get("/api/v1/namespaces/default/pods/p").status_code == 404


def test_two_budgets_are_a_500_and_the_pod_gets_the_disruption_target_condition(apiserver, http):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    http.patch("/api/v1/namespaces/default/pods/p/status", json={"status": {"phase": "Running"}},
               headers={"Content-Type": "application/merge-patch+json"})
    for name in ("one", "two"):
        assert http.post(PDB_PATH, json=budget(name, "x", maxUnavailable=1)).status_code == 201
    response = http.post("/api/v1/namespaces/default/pods/p/eviction", json=eviction("p"))
    assert response.status_code == 500
    assert response.json()["message"] == ("Internal error occurred: This pod has more than one "
                                          "PodDisruptionBudget, which the eviction subresource does not support.")
    assert http.delete(f"{PDB_PATH}/two").status_code == 200
    # a budget that allows it: the pod is marked and deleted gracefully
    http.patch(f"{PDB_PATH}/one/status", headers={"Content-Type": "application/merge-patch+json"},
               json={"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 1,
                                "desiredHealthy": 0, "expectedPods": 1}})
    assert http.post("/api/v1/namespaces/default/pods/p/eviction", json=eviction("p")).status_code == 201
    going = http.get("/api/v1/namespaces/default/pods/p").json()
    assert going["metadata"].get("deletionTimestamp")
    target = next(c for c in going["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (target["status"], target["reason"], target["message"]) == ("True", "EvictionByEvictionAPI",
                                                                       "Eviction API: evicting")
    assert http.get(f"{PDB_PATH}/one").json()["status"]["disruptionsAllowed"] == 0


def test_budget_validation(http):
    both = budget("bad", "x", minAvailable=1, maxUnavailable="10%")
    response = http.post(PDB_PATH, json=both)
    assert response.status_code == 422
    assert {c["field"] for c in response.json()["details"]["causes"]} == {"spec"}
    response = http.post(PDB_PATH, json=budget("bad", "x", minAvailable="120%"))
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "spec.minAvailable"
    response = http.post(PDB_PATH, json=budget("bad", "x", maxUnavailable="half"))
    assert response.status_code == 422
