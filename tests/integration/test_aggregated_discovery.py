"""Aggregated discovery (apidiscovery.k8s.io/v2): the real kubectl (1.32 and 1.37) learns the
whole API from /api and /apis, two requests instead of one per group version, and learns the
same resources as from the per-version documents; a CRD shows up in it once established."""

from __future__ import annotations

import re

from pkube.apiserver.discovery import AGGREGATED
from tests.integration.test_crds import GROUP, kubectl, kubectl_binaries, widget_crd  # noqa: F401 - the fixture
from tests.helpers.waiting import wait_for

REQUEST = re.compile(r'(?:GET (https?://\S+) \d{3}|verb="GET" url="(https?://[^"]+)")')


def requested_paths(log: str) -> list[str]:
    """The paths of the GETs in kubectl's -v=6 log (1.32's and 1.37's formats)."""
    urls = [a or b for a, b in REQUEST.findall(log)]
    return [re.sub(r"^https?://[^/]+", "", url).split("?")[0] for url in urls]


def plain_resources(http) -> set[str]:
    """Every resource's name (with its group) from /api/v1 and each group version's own document."""
    names = {r["name"] for r in http.get("/api/v1").json()["resources"] if "/" not in r["name"]}
    for group in http.get("/apis").json()["groups"]:
        for version in group["versions"]:
            doc = http.get(f"/apis/{version['groupVersion']}").json()
            names |= {f"{r['name']}.{group['name']}" for r in doc["resources"] if "/" not in r["name"]}
    return names


def test_kubectl_discovers_the_api_from_two_documents_and_finds_every_resource(kubectl, http):
    listed = kubectl("get", "configmaps", "-A", "-v=6")
    assert listed.returncode == 0, listed.stderr
    assert requested_paths(listed.stderr) == ["/api", "/apis", "/api/v1/configmaps"], listed.stderr
    resources = kubectl("api-resources", "-o", "name")
    assert resources.returncode == 0, resources.stderr
    assert set(resources.stdout.split()) == plain_resources(http)


def test_a_plain_client_still_gets_the_plain_documents_and_a_crd_joins_the_aggregated_one(http):
    plain = http.get("/apis")
    assert (plain.headers["content-type"], plain.json()["kind"]) == ("application/json", "APIGroupList")
    asked = {"Accept": f"{AGGREGATED},application/json"}
    aggregated = http.get("/apis", headers=asked)
    assert aggregated.headers["content-type"] == AGGREGATED and aggregated.headers["vary"] == "Accept"
    groups = {g["metadata"]["name"]: g for g in aggregated.json()["items"]}
    deployments = next(r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced" and deployments["shortNames"] == ["deploy"]
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]} in deployments["subresources"]
    core = http.get("/api", headers=asked).json()["items"]
    assert [g["metadata"]["name"] for g in core] == [""] and core[0]["versions"][0]["version"] == "v1"
    assert GROUP not in groups

    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=widget_crd()).status_code == 201
    wait_for(lambda: GROUP in {g["metadata"]["name"] for g in http.get("/apis", headers=asked).json()["items"]},
                 timeout=10)
