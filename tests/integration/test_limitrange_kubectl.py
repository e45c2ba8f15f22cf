"""core/v1 LimitRange with the real kubectl (1.32 and 1.37) on a real apiserver and etcd running
the LimitRanger admission plugin: `kubectl apply` stores a LimitRange, `kubectl get limits`
prints NAME and CREATED AT, a pod made without resources is stored with the namespace's
defaults and the limit-ranger annotation, a pod over the max is refused with upstream's
Forbidden message, an invalid LimitRange with its field path, and `kubectl delete` removes it."""

from __future__ import annotations

import pytest

from pkube.apiserver.admission_limitranger import LimitRanger
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver
from tests.integration.test_crds import kubectl, kubectl_binaries  # noqa: F401 - the fixture
from tests.integration.test_networking_kubectl import rows

LIMITS = """\
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: 500m}
"""

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers: [{name: app, image: busybox%s}]
"""

BAD_LIMITS = """\
apiVersion: v1
kind: LimitRange
metadata: {name: bad}
spec:
  limits: [{type: Container, min: {cpu: "2"}, max: {cpu: "1"}}]
"""


@pytest.fixture
def apiserver(etcd):
    """This module's apiserver: the LimitRanger admission plugin on (kubectl and http use it)."""
    thread, running = start_apiserver(etcd, bookmark_interval=0.5,
                                      admission_plugins_for=lambda store: [LimitRanger(store)])
    try:
        yield running
    finally:
        stop_apiserver(thread)


def test_kubectl_applies_a_limit_range_whose_defaults_and_max_apply_to_new_pods(kubectl, http):
    applied = kubectl("apply", "-f", "-", stdin=LIMITS)
    assert applied.returncode == 0, applied.stderr
    assert "limitrange/defaults created" in applied.stdout

    got = kubectl("get", "limits")
    assert got.returncode == 0, got.stderr
    table = rows(got.stdout)
    assert table[0] == ["NAME", "CREATED AT"]
    assert table[1][0] == "defaults" and table[1][1].endswith("Z")

    def pod_defaulted():      # once the plugin's watch has seen the LimitRange
        made = kubectl("apply", "-f", "-", stdin=POD % ("plain", ""))
        assert made.returncode == 0, made.stderr
        stored = http.get("/api/v1/namespaces/default/pods/plain").json()
        if "resources" not in stored["spec"]["containers"][0] or not stored["spec"]["containers"][0]["resources"]:
            assert kubectl("delete", "pod", "plain", "--wait=false").returncode == 0
            wait_for(lambda: http.get("/api/v1/namespaces/default/pods/plain").status_code == 404, timeout=10)
            return None
        return stored
    stored = wait_for(pod_defaulted, timeout=15)
    assert stored["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                                           "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert stored["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app")

    refused = kubectl("apply", "-f", "-", stdin=POD % ("big", ", resources: {limits: {cpu: '1'}}"))
    assert refused.returncode != 0
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 500m, but limit is 1' in refused.stderr
    assert "Forbidden" in refused.stderr

    invalid = kubectl("apply", "-f", "-", stdin=BAD_LIMITS)
    assert invalid.returncode != 0
    assert 'The LimitRange "bad" is invalid' in invalid.stderr
    assert "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1" in invalid.stderr

    deleted = kubectl("delete", "-f", "-", stdin=LIMITS)
    assert deleted.returncode == 0, deleted.stderr
    left = kubectl("get", "limits", "-o", "name")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr
