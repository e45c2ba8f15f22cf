"""apiserver.openapi: the documents kubectl apply and explain read."""

import json
from dataclasses import dataclass, field

import pytest

from pkube.apiserver.openapi import OpenAPIDocuments, group_version_path


@dataclass(frozen=True)
class Res:
    group: str
    kind: str
    plural: str
    namespaced: bool = True
    subresources: dict = field(default_factory=dict, hash=False)
    version: str = "v1"

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


SERVED = (Res("", "Pod", "pods"), Res("", "Node", "nodes", namespaced=False), Res("", "Service", "services"),
          Res("apps", "Deployment", "deployments", subresources={"scale": ("get",)}),
          Res("discovery.k8s.io", "EndpointSlice", "endpointslices"), Res("coordination.k8s.io", "Lease", "leases"))


@pytest.fixture(scope="module")
def docs():
    return OpenAPIDocuments(SERVED)


def all_refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_root_lists_every_served_group_version_with_a_hash(docs):
    root = docs.v3_root["paths"]
    assert set(root) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/coordination.k8s.io/v1"}
    assert root["apis/apps/v1"]["serverRelativeURL"].startswith("/openapi/v3/apis/apps/v1?hash=")
    assert group_version_path("apps/v1") == "apis/apps/v1" and group_version_path("v1") == "api/v1"
    assert docs.v3_group("v1") is docs.v3_group("api/v1")
    assert docs.v3_group("batch/v1") is None


def test_deployment_patch_supports_field_validation_and_strategic_merge(docs):
    doc = docs.v3_group("apps/v1")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][2].items()
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale" in doc["paths"]


def test_schemas_are_openapi_shaped_and_self_contained(docs):
    for key, doc in docs.groups.items():
        schemas = doc["components"]["schemas"]
        for ref in all_refs(doc):
            assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, (key, ref)
        assert '"null"' not in json.dumps(schemas)
    pod_spec = docs.v3_group("v1")["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]
    containers = pod_spec["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["type"] == "array"
    pod = docs.v3_group("v1")["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert pod["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]


def test_v2_uses_definitions(docs):
    v2 = docs.v2
    assert v2["swagger"] == "2.0"
    assert "io.k8s.api.apps.v1.Deployment" in v2["definitions"]
    assert all(ref.startswith("#/definitions/") for ref in all_refs(v2))
    patch = v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]


def test_v3_headers_make_hashed_urls_immutable(docs):
    from pkube.apiserver.openapi import document_hash, openapi_v3_headers

    digest = document_hash(docs.v3_group("apps/v1"))
    fresh = openapi_v3_headers("apis/apps/v1", digest, docs)
    assert fresh == {"ETag": f'"{digest}"', "Cache-Control": "public, immutable"}
    assert openapi_v3_headers("apps/v1", "stale", docs)["Cache-Control"] == "no-cache, private"
    assert openapi_v3_headers("batch/v1", None, docs) == {}


def test_v3_names_int_or_string_and_quantity_and_drops_type_meta_enums(docs):
    schemas = docs.v3_group("v1")["components"]["schemas"]
    assert "oneOf" in schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert "type" not in schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert "enum" not in schemas["io.k8s.api.core.v1.Pod"]["properties"]["apiVersion"]
    assert docs.v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
