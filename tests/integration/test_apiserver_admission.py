"""Admission plugins run on creates and updates: a mutation is stored, a refusal stores
nothing and reaches the client as the plugin's Status."""

from __future__ import annotations

import pytest

from pkube.apiserver import errors
from tests.integration.conftest import start_apiserver, stop_apiserver


class LabelsEveryConfigMap:
    """Mutates: adds a label. Validates: refuses a ConfigMap whose data has key "forbidden"."""

    name = "test"

    def __init__(self):
        self.started = False
        self.seen: list[tuple[str, str]] = []

    async def start(self):
        self.started = True

    def mutate(self, request):
        self.seen.append((request.operation, request.kind))
        if request.kind == "ConfigMap":
            request.obj.setdefault("metadata", {}).setdefault("labels", {})["admitted"] = "yes"

    def validate(self, request):
        if request.kind == "ConfigMap" and "forbidden" in (request.obj.get("data") or {}):
            raise errors.ApiError(403, "Forbidden", 'configmaps "x" is forbidden: key "forbidden" is not allowed')


@pytest.fixture
def admitted(etcd):
    plugin = LabelsEveryConfigMap()
    thread, running = start_apiserver(etcd, admission_plugins=[plugin])
    try:
        yield running, plugin
    finally:
        stop_apiserver(thread)


def test_a_mutating_plugin_changes_what_is_stored(admitted):
    api, plugin = admitted
    with api.client() as http:
        made = http.post("/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": "a"}, "data": {"k": "v"}})
        assert made.status_code == 201, made.text
        assert http.get("/api/v1/namespaces/default/configmaps/a").json()["metadata"]["labels"] == {"admitted": "yes"}
        updated = http.put("/api/v1/namespaces/default/configmaps/a",
                           json={"metadata": {"name": "a"}, "data": {"k": "w"}})
        assert updated.json()["metadata"]["labels"] == {"admitted": "yes"}
    assert plugin.started
    assert ("CREATE", "ConfigMap") in plugin.seen and ("UPDATE", "ConfigMap") in plugin.seen


def test_a_refusal_stores_nothing_and_answers_the_plugins_status(admitted):
    api, _ = admitted
    with api.client() as http:
        refused = http.post("/api/v1/namespaces/default/configmaps",
                            json={"metadata": {"name": "b"}, "data": {"forbidden": "1"}})
        assert refused.status_code == 403
        assert refused.json()["reason"] == "Forbidden"
        assert http.get("/api/v1/namespaces/default/configmaps/b").status_code == 404
        http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "c"}, "data": {"k": "v"}})
        changed = http.put("/api/v1/namespaces/default/configmaps/c",
                           json={"metadata": {"name": "c"}, "data": {"forbidden": "1"}})
        assert changed.status_code == 403
        assert http.get("/api/v1/namespaces/default/configmaps/c").json()["data"] == {"k": "v"}
