"""Pod Security Admission on a real apiserver: a namespace's enforce label refuses a violating
pod with Kubernetes' exact message, its warn label warns (the real kubectl prints it), its
audit label annotates the audit event; workloads only warn; kube-system is exempt."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pkube.apiserver.audit import AuditLog, Auditor, parse_policy
from pkube.apiserver.podsecurity import PodSecurity
from pkube.apiserver.requestfilters import RequestFilters
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver

KUBECTL = shutil.which("kubectl")
POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}
PRIVILEGED_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "securityContext": {"privileged": True}}]}}
ENFORCE_MESSAGE = ('pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged '
                   '(container "c" must not set securityContext.privileged=true)')
RESTRICTED_WARNING = (
    'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set '
    'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set '
    'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set '
    'securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


@pytest.fixture
def psa(etcd, tmp_path):
    auditor = Auditor(parse_policy(POLICY), AuditLog(tmp_path / "audit.log"))
    thread, running = start_apiserver(etcd, admission_plugins_for=lambda storage: [PodSecurity(storage)],
                                      filters=RequestFilters(auditor=auditor))
    try:
        yield running, tmp_path / "audit.log"
    finally:
        stop_apiserver(thread)


def namespace(http, name: str, **labels: str) -> None:
    labels = {f"pod-security.kubernetes.io/{mode}": level for mode, level in labels.items()}
    made = http.post("/api/v1/namespaces", json={"metadata": {"name": name, "labels": labels}})
    assert made.status_code == 201, made.text


def plain_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def refused_once_known(http, ns: str, pod: dict):
    """Create ``pod`` with dryRun until the plugin's namespace cache (a watch) knows the new
    namespace's labels and refuses it; the refusal."""
    url = f"/api/v1/namespaces/{ns}/pods?dryRun=All"
    return wait_for(lambda: (r := http.post(url, json=pod)).status_code == 403 and r)


def test_enforce_refuses_a_privileged_pod_with_kubernetes_message(psa):
    api, _ = psa
    with api.client() as http:
        namespace(http, "locked", enforce="baseline")
        refused = refused_once_known(http, "locked", PRIVILEGED_POD)
        assert refused.json()["message"] == ENFORCE_MESSAGE and refused.json()["reason"] == "Forbidden"
        real = http.post("/api/v1/namespaces/locked/pods", json=PRIVILEGED_POD)
        assert real.status_code == 403 and real.json()["message"] == ENFORCE_MESSAGE
        assert http.get("/api/v1/namespaces/locked/pods/x").status_code == 404
        assert http.post("/api/v1/namespaces/locked/pods", json=plain_pod("ok")).status_code == 201


def test_an_unlabelled_namespace_and_kube_system_take_privileged_pods(psa):
    api, _ = psa
    with api.client() as http:
        namespace(http, "open")
        for ns in ("open", "kube-system", "default"):
            made = http.post(f"/api/v1/namespaces/{ns}/pods", json=PRIVILEGED_POD)
            assert made.status_code == 201, (ns, made.text)
            assert "warning" not in made.headers


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_warn_reaches_kubectl_and_audit_annotates_the_event(psa, tmp_path):
    api, log = psa
    with api.client() as http:
        namespace(http, "watched", warn="restricted", audit="restricted")
        wait_for(lambda: "warning" in http.post("/api/v1/namespaces/watched/pods?dryRun=All",
                                                 json=plain_pod("probe")).headers)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(plain_pod("web")))
    config = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    done = subprocess.run([KUBECTL, "--kubeconfig", str(config), "-n", "watched", "apply", "-f", str(manifest)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Warning: {RESTRICTED_WARNING}" in done.stderr
    assert "pod/web created" in done.stdout

    def created_event():
        for line in log.read_text().splitlines() if log.exists() else []:
            event = json.loads(line)
            if event["verb"] == "create" and event.get("objectRef", {}).get("name") == "web":
                return event
        return None
    annotations = wait_for(created_event)["annotations"]
    assert annotations["pod-security.kubernetes.io/audit-violations"] == RESTRICTED_WARNING
    assert annotations["pod-security.kubernetes.io/enforce-policy"] == "privileged:latest"


def test_workloads_are_only_warned_even_where_pods_are_refused(psa):
    api, _ = psa
    with api.client() as http:
        namespace(http, "apps-ns", enforce="baseline", warn="baseline")
        refused_once_known(http, "apps-ns", PRIVILEGED_POD)
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                      "spec": {"selector": {"matchLabels": {"a": "b"}},
                               "template": {"metadata": {"labels": {"a": "b"}}, "spec": PRIVILEGED_POD["spec"]}}}
        made = http.post("/apis/apps/v1/namespaces/apps-ns/deployments", json=deployment)
        assert made.status_code == 201, made.text
        assert made.headers["warning"] == ('299 - "would violate PodSecurity \\"baseline:latest\\": privileged '
                                           '(container \\"c\\" must not set securityContext.privileged=true)"')


def test_a_label_change_applies_to_the_next_pod(psa):
    api, _ = psa
    with api.client() as http:
        namespace(http, "later")
        assert http.post("/api/v1/namespaces/later/pods", json=PRIVILEGED_POD).status_code == 201
        patched = http.patch("/api/v1/namespaces/later", json={"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "baseline"}}},
            headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status_code == 200
        second = dict(PRIVILEGED_POD, metadata={"name": "x"})
        http.delete("/api/v1/namespaces/later/pods/x?gracePeriodSeconds=0")
        assert refused_once_known(http, "later", second).json()["message"] == ENFORCE_MESSAGE


def test_the_default_audit_policy_file_parses():
    path = Path(__file__).resolve().parents[2] / "pkube" / "cluster" / "templates" / "audit-policy.yaml"
    assert parse_policy(yaml.safe_load(path.read_text())).rules
