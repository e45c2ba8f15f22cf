"""The default/kubernetes Service the apiserver keeps pointing at itself (pkube/apiserver/bootstrap.py)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

from pkube.cluster.etcd import free_port
from tests.helpers.waiting import wait_for
from tests.integration.conftest import start_apiserver, stop_apiserver
from tests.integration.processes import start_component, stop_all


@contextmanager
def serving(etcd, advertise):
    """An HTTP client of an apiserver advertising (ip, port, scheme), stopped on leaving."""
    thread, api = start_apiserver(etcd, advertise=advertise)
    try:
        with api.client() as http:
            yield http
    finally:
        stop_apiserver(thread)


def get(http, path):
    response = http.get(path)
    return response.status_code, response.json()


def test_the_kubernetes_service_points_at_the_advertised_apiserver(etcd):
    with serving(etcd, ("127.0.0.1", 6443, "https")) as http:
        code, svc = get(http, "/api/v1/namespaces/default/services/kubernetes")
        assert code == 200
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
        code, ep = get(http, "/api/v1/namespaces/default/endpoints/kubernetes")
        assert ep["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                                  "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        code, eps = get(http, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
        assert eps["endpoints"][0]["addresses"] == ["127.0.0.1"] and eps["ports"][0]["port"] == 6443
        other = http.post("/api/v1/namespaces/default/services", json={
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"},
            "spec": {"ports": [{"port": 80}]}}).json()
        assert other["spec"]["clusterIP"] != "10.96.0.1"


def test_a_moved_apiserver_updates_its_endpoints_and_someone_elses_service_is_left_alone(etcd):
    thread, api = start_apiserver(etcd, advertise=("127.0.0.1", 6443, "https"))
    stop_apiserver(thread)
    with serving(etcd, ("127.0.0.2", 7443, "http")) as http:
        _, ep = get(http, "/api/v1/namespaces/default/endpoints/kubernetes")
        assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.2"}]
        assert ep["subsets"][0]["ports"][0]["port"] == 7443
        assert http.delete("/api/v1/namespaces/default/services/kubernetes").status_code == 200
        assert http.delete("/api/v1/namespaces/default/endpoints/kubernetes").status_code == 200
        assert http.post("/api/v1/namespaces/default/services", json={
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes"},
            "spec": {"ports": [{"port": 80}]}}).status_code == 201
    with serving(etcd, ("127.0.0.3", 6443, "https")) as http:
        _, svc = get(http, "/api/v1/namespaces/default/services/kubernetes")
        assert svc["spec"]["ports"][0]["port"] == 80
        assert http.get("/api/v1/namespaces/default/endpoints/kubernetes").status_code == 404


def test_a_bad_advertise_address_is_one_clear_line():
    run = subprocess.run([sys.executable, "-m", "pkube.apiserver", "--advertise-address", "not-an-ip",
                          "--etcd-servers", "127.0.0.1:1", "--port", "1"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == ["apiserver: --advertise-address 'not-an-ip' is not an IP address"]


# ---------------------------------------------------------------- several apiservers

def _endpoint_addresses(http) -> tuple[list[str], list[str]]:
    """(Endpoints addresses, EndpointSlice addresses) of default/kubernetes."""
    ep = http.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
    eps = http.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes").json()
    return ([a["ip"] for a in ep["subsets"][0]["addresses"]],
            [e["addresses"][0] for e in eps["endpoints"]])


def _wait_addresses(http, want: list[str], timeout: float = 10) -> None:
    wait_for(lambda: _endpoint_addresses(http) == (want, want), timeout=timeout)


def test_every_live_apiserver_is_an_endpoint_and_a_stopped_one_leaves_at_once(etcd):
    first, api = start_apiserver(etcd, advertise=("127.0.0.2", 6443, "https"), endpoint_lease_duration=1.5)
    try:
        second, _ = start_apiserver(etcd, advertise=("127.0.0.3", 6443, "https"), endpoint_lease_duration=1.5)
        with api.client() as http:
            _wait_addresses(http, ["127.0.0.2", "127.0.0.3"])
            stop_apiserver(second)
            _wait_addresses(http, ["127.0.0.2"], timeout=1)
            leases = http.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases").json()["items"]
            assert [lease["spec"]["holderIdentity"] for lease in leases] == ["127.0.0.2:6443"]
    finally:
        stop_apiserver(first)


def test_a_killed_apiserver_leaves_the_endpoints_when_its_lease_expires(etcd, tmp_path):

    port = free_port()   # every apiserver of a cluster serves on the same port
    first, api = start_apiserver(etcd, advertise=("127.0.0.2", port, "http"), endpoint_lease_duration=1.5)
    killed = start_component("pkube.apiserver", [
        "--etcd-servers", f"http://127.0.0.1:{etcd.client_port}", "--port", str(port),
        "--advertise-address", "127.0.0.4", "--endpoint-lease-duration", "1.5"], tmp_path / "apiserver.log")
    try:
        with api.client() as http:
            _wait_addresses(http, ["127.0.0.2", "127.0.0.4"], timeout=30)
            killed.kill()
            killed.wait(10)
            _wait_addresses(http, ["127.0.0.2"], timeout=10)
    finally:
        stop_all([killed])
        stop_apiserver(first)
