"""HorizontalPodAutoscalers on a real apiserver with the real kubectl: `kubectl autoscale`
(autoscaling/v1 from kubectl 1.32, v2 from 1.33), both versions of one object, validation,
`kubectl get hpa`, and the controller moving a Deployment into min/maxReplicas and reporting
that no metrics are served (a bare apiserver has no kubelet to read usage from)."""

import shutil
import subprocess

import pytest

from pkube.client.resources import DEPLOYMENTS, HORIZONTALPODAUTOSCALERS
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import until
from tests.integration.test_controllers_kubectl import kubectl
from tests.integration.test_controllers_support import with_controllers
from tests.integration.test_disruption_eviction import deployment
from tests.integration.test_pkubectl_nodes import cli  # noqa: F401 - the fixture

V1_PATH = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
V2_PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
KUBECTL = shutil.which("kubectl")
KUBECTL_133 = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"


def hpa(name, target, **spec):
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "maxReplicas": 4, **spec}}


def test_v1_and_v2_views_of_one_autoscaler(http):
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
          "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                   "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}}
    created = http.post(V1_PATH, json=v1)
    assert created.status_code == 201, created.text
    assert created.json()["spec"] == {**v1["spec"], "minReplicas": 1}
    v2 = http.get(f"{V2_PATH}/web").json()
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    # a v2 edit that v1 cannot say survives a v1 update
    v2["spec"]["metrics"].append({"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}})
    v2["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    updated = http.put(f"{V2_PATH}/web", json=v2)
    assert updated.status_code == 200, updated.text
    seen = http.get(f"{V1_PATH}/web").json()
    assert "autoscaling.alpha.kubernetes.io/metrics" in seen["metadata"]["annotations"]
    seen["spec"]["targetCPUUtilizationPercentage"] = 70
    assert http.put(f"{V1_PATH}/web", json=seen).status_code == 200, seen
    v2 = http.get(f"{V2_PATH}/web").json()
    assert [m["resource"]["name"] for m in v2["spec"]["metrics"]] == ["cpu", "memory"]
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert v2["spec"]["behavior"]["scaleUp"]["policies"]      # defaults filled in
    assert "annotations" not in v2["metadata"]
    listed = http.get(V1_PATH).json()
    assert listed["apiVersion"] == "autoscaling/v1"
    assert [item["apiVersion"] for item in listed["items"]] == ["autoscaling/v1"]
    assert listed["items"][0]["spec"]["targetCPUUtilizationPercentage"] == 70


def test_validation_names_the_fields(http):
    bad = hpa("bad", "web", minReplicas=5, maxReplicas=2, metrics=[
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}])
    response = http.post(V2_PATH, json=bad)
    assert response.status_code == 422
    fields = {c["field"] for c in response.json()["details"]["causes"]}
    assert fields == {"spec.maxReplicas", "spec.metrics[0].resource.target.averageUtilization"}
    bad = hpa("bad", "web", behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 4000}]}})
    fields = {c["field"] for c in http.post(V2_PATH, json=bad).json()["details"]["causes"]}
    assert fields == {"spec.behavior.scaleUp.policies[0].value", "spec.behavior.scaleUp.policies[0].periodSeconds"}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_autoscale_then_the_controller_moves_into_bounds(apiserver, tmp_path):
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async def scenario(client):
        await client.create(DEPLOYMENTS, deployment("web", 1), "default")
        code, out = await kubectl(config, "autoscale", "deployment", "web", "--cpu-percent=50", "--min=2", "--max=4")
        assert code == 0 and "horizontalpodautoscaler.autoscaling/web autoscaled" in out, out

        async def scaled_to_min():
            deploy = await client.get(DEPLOYMENTS, "web", "default")
            return deploy["spec"]["replicas"] == 2 and deploy
        await until(scaled_to_min)

        async def reported():
            status = (await client.get(HORIZONTALPODAUTOSCALERS, "web", "default")).get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            return "ScalingActive" in conditions and status.get("currentReplicas") == 2 and (status, conditions)
        status, conditions = await until(reported)
        assert status["lastScaleTime"]
        assert (conditions["ScalingActive"]["status"], conditions["ScalingActive"]["reason"]) == \
            ("False", "FailedGetResourceMetric")
        assert conditions["AbleToScale"]["status"] == "True"
        code, out = await kubectl(config, "get", "hpa")
        assert code == 0, out
        assert out.split("\n")[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert out.split("\n")[1].split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "2", "4", "2"]
        code, out = await kubectl(config, "get", "events", "--field-selector", "reason=SuccessfulRescale")
        assert "New size: 2; reason: Current number of replicas below Spec.MinReplicas" in out
    with_controllers(apiserver, scenario, names=("replicaset", "deployment", "horizontalpodautoscaling"),
                     horizontal_pod_autoscaler_sync_period=1.0)


@pytest.mark.skipif(not shutil.which(KUBECTL_133), reason="kubectl 1.33 is not installed")
def test_kubectl_133_autoscale_posts_v2(http, apiserver, tmp_path):
    config = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    assert http.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("api", 1)).status_code == 201
    done = subprocess.run([KUBECTL_133, "--kubeconfig", str(config), "autoscale", "deployment", "api",
                           "--cpu-percent=60", "--max=3", "-v=6"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers" in done.stderr
    v2 = http.get(f"{V2_PATH}/api").json()
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_pkubectl_autoscale_and_get_hpa(cli):  # noqa: F811 - the fixture
    cli.http.post("/apis/apps/v1/namespaces/default/deployments", json=deployment("front", 1)).raise_for_status()
    assert cli.pk("autoscale", "deployment", "front", "--min=2", "--max=5", "--cpu-percent=70") == \
        (0, "horizontalpodautoscaler.autoscaling/front autoscaled\n", "")
    made = cli.get(f"{V2_PATH}/front")
    assert made["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "front"}
    assert (made["spec"]["minReplicas"], made["spec"]["maxReplicas"]) == (2, 5)
    code, out, _ = cli.pk("get", "hpa")
    assert code == 0 and out.splitlines()[1].split()[:6] == ["front", "Deployment/front", "cpu:", "<unknown>/70%", "2", "5"]
    assert cli.pk("autoscale", "deployment", "front", "--min=3", "--max=2") == \
        (1, "", "error: --max=MAXPODS must be larger or equal to --min=MINPODS, max: 2, min: 3\n")
    assert cli.pk("autoscale", "pod", "x", "--max=2") == (1, "", "error: cannot autoscale a Pod: cannot autoscale a Pod\n")
    code, _, err = cli.pk("autoscale", "deployment", "front", "--max=3")
    assert code == 1 and "AlreadyExists" in err and "already exists" in err
