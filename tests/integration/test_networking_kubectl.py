"""networking.k8s.io/v1 with the real kubectl (1.32 and 1.37) on a real apiserver and etcd: an
everyday app manifest (Deployment, Service, IngressClass, Ingress, NetworkPolicy) applies,
`kubectl get ingress,netpol,ingressclass` prints kubectl's columns, `kubectl explain` reads
the Ingress schema, an invalid Ingress is refused with 422 and its field path, the stored
NetworkPolicy carries its defaults, and `kubectl delete -f` removes everything; pkubectl does
the same with the same columns; DefaultIngressClass gives a classless Ingress the default class."""

from __future__ import annotations

import re

import httpx
import pytest

from pkube.apiserver.admission_networking import DefaultIngressClass
from tests.helpers.kubeconfig import write_kubeconfig
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver
from tests.integration.test_crds import kubectl, kubectl_binaries  # noqa: F401 - the fixture
from tests.integration.test_pkubectl_workloads import Cli

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: web, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec:
  controller: k8s.io/ingress-nginx
  parameters: {apiGroup: k8s.example.com, kind: IngressParameters, name: external}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: nginx
  tls: [{hosts: [shop.example.com], secretName: shop-tls}]
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {name: http}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: shop-db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: shop}}}]
    ports: [{port: 5432}]
"""

BAD_INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad}
spec:
  rules:
  - http:
      paths:
      - {path: /, backend: {service: {name: shop, port: {number: 80}}}}
"""


def rows(out: str) -> list[list[str]]:
    """kubectl's table lines split on runs of two spaces or more (an empty cell vanishes)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


def test_kubectl_applies_gets_explains_and_deletes_an_app_with_ingress_and_network_policy(kubectl, http):
    applied = kubectl("apply", "-f", "-", stdin=APP)
    assert applied.returncode == 0, applied.stderr
    assert "ingress.networking.k8s.io/shop created" in applied.stdout
    assert "networkpolicy.networking.k8s.io/shop-db created" in applied.stdout

    got = kubectl("get", "ingress,netpol,ingressclass")
    assert got.returncode == 0, got.stderr
    table = rows(got.stdout)
    assert table[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert table[1][:3] == ["ingress.networking.k8s.io/shop", "nginx", "shop.example.com"]
    assert table[1][3] == "80, 443"              # ADDRESS is empty: no ingress controller fills it
    policies = table.index(["NAME", "POD-SELECTOR", "AGE"])
    assert table[policies + 1][:2] == ["networkpolicy.networking.k8s.io/shop-db", "app=db"]
    classes = table.index(["NAME", "CONTROLLER", "PARAMETERS", "AGE"])
    assert table[classes + 1][:3] == ["ingressclass.networking.k8s.io/nginx", "k8s.io/ingress-nginx",
                                      "IngressParameters.k8s.example.com/external"]

    stored = http.get("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/shop-db").json()
    assert stored["spec"]["policyTypes"] == ["Ingress"]
    assert stored["spec"]["ingress"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    ingress = http.get("/apis/networking.k8s.io/v1/namespaces/default/ingresses/shop").json()
    assert ingress["status"] == {"loadBalancer": {}}
    assert kubectl("get", "ing", "shop", "-o", "name").stdout.strip() == "ingress.networking.k8s.io/shop"

    explained = kubectl("explain", "ingress.spec.rules")
    assert explained.returncode == 0, explained.stderr
    assert "host" in explained.stdout and "http" in explained.stdout

    refused = kubectl("apply", "-f", "-", stdin=BAD_INGRESS)
    assert refused.returncode != 0
    assert 'The Ingress "bad" is invalid: spec.rules[0].http.paths[0].pathType: Required value: ' \
           "pathType must be specified" in refused.stderr
    posted = http.post("/apis/networking.k8s.io/v1/namespaces/default/ingresses", json={
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]}})
    assert posted.status_code == 422
    assert posted.json()["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "message": 'Invalid value: "": resource or service backend is required',
        "field": "spec.rules[0].http.paths[0].backend"}]

    deleted = kubectl("delete", "-f", "-", stdin=APP)
    assert deleted.returncode == 0, deleted.stderr
    left = kubectl("get", "ingress,netpol,ingressclass", "-o", "name")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr


def test_pkubectl_applies_gets_describes_and_deletes_the_same_app(apiserver, tmp_path):
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP)
    cli = Cli(apiserver.url, write_kubeconfig(tmp_path / "kubeconfig", apiserver.url))
    try:
        code, out, err = cli.pk("apply", "-f", str(manifest))
        assert code == 0 and "ingressclass.networking.k8s.io/nginx created" in out, err
        code, out, err = cli.pk("get", "ing")
        assert code == 0, err
        assert rows(out)[1][:3] == ["shop", "nginx", "shop.example.com"] and rows(out)[1][3] == "80, 443"
        code, out, err = cli.pk("get", "netpol")
        assert code == 0 and rows(out)[1][:2] == ["shop-db", "app=db"], out + err
        code, out, err = cli.pk("describe", "netpol", "shop-db")
        assert code == 0 and "protocol: TCP" in out and "- Ingress" in out, out + err
        code, out, err = cli.pk("delete", "-f", str(manifest))
        assert code == 0, err
        code, out, err = cli.pk("get", "ing,netpol,ingressclass")
        assert code == 0 and out == "", out
    finally:
        cli.http.close()


@pytest.fixture
def admitting_apiserver(etcd):
    thread, running = start_apiserver(etcd, admission_plugins_for=lambda store: [DefaultIngressClass(store)])
    try:
        yield running
    finally:
        stop_apiserver(thread)


def test_an_ingress_created_without_a_class_gets_the_default_one(admitting_apiserver):
    default = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
               "spec": {"controller": "k8s.io/ingress-nginx"}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop"},
               "spec": {"defaultBackend": {"service": {"name": "shop", "port": {"number": 80}}}}}
    ingresses = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
    with httpx.Client(base_url=admitting_apiserver.url, timeout=30) as http:
        assert http.post("/apis/networking.k8s.io/v1/ingressclasses", json=default).status_code == 201

        def created_class():
            answer = http.post(ingresses, json=ingress)
            assert answer.status_code == 201, answer.text
            http.delete(f"{ingresses}/shop")
            return answer.json()["spec"].get("ingressClassName")
        wait_for(lambda: created_class() == "nginx", timeout=10)   # once the plugin's watch saw the class


def test_kubectl_create_ingress_and_pdb_which_kubectl_sends_as_protobuf(kubectl, http):
    made = kubectl("create", "ingress", "simple", "--rule=foo.example.com/bar=svc1:8080")
    assert made.returncode == 0, made.stderr
    assert "ingress.networking.k8s.io/simple created" in made.stdout
    rule = http.get("/apis/networking.k8s.io/v1/namespaces/default/ingresses/simple").json()["spec"]["rules"][0]
    assert rule["host"] == "foo.example.com"
    assert rule["http"]["paths"][0] == {"path": "/bar", "pathType": "Exact",
                                        "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}
    budget = kubectl("create", "poddisruptionbudget", "shop", "--selector=app=shop", "--min-available=1")
    assert budget.returncode == 0, budget.stderr
    spec = http.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/shop").json()["spec"]
    assert spec["minAvailable"] == 1 and spec["selector"] == {"matchLabels": {"app": "shop"}}
    assert kubectl("delete", "ingress/simple", "pdb/shop").returncode == 0
