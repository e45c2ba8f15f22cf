"""The CRD controller's decisions (pkube/apiserver/customresources.py), without a store: which CRDs
are served when their names clash, and the status each one should get."""

from __future__ import annotations

import asyncio

from pkube.api.kinds import Registry
from pkube.apiserver.customresources import CustomResourceDefinitions, with_status
from tests.unit.test_api_crd import crd


def gizmo(created: str, short: str) -> dict:
    made = crd()
    made["metadata"] = {"name": "gizmos.example.com", "creationTimestamp": created}
    made["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList",
                             "shortNames": [short]}
    return made


def widget(created: str, short: str) -> dict:
    made = crd()
    made["metadata"]["creationTimestamp"] = created
    made["spec"]["names"]["shortNames"] = [short]
    return made


def decide(*definitions: dict) -> tuple[Registry, CustomResourceDefinitions]:
    """Run the controller's refresh over ``definitions`` (its status writes are not run)."""
    registry = Registry()
    controller = CustomResourceDefinitions(None, registry, None)

    async def refresh():
        controller.crds = {d["metadata"]["name"]: d for d in definitions}
        controller.refresh()
        await controller.stop()
    asyncio.run(refresh())
    return registry, controller


def test_the_older_crd_keeps_a_clashing_name_whatever_the_order():
    for first, second in ((widget("2026-01-01T00:00:00Z", "wd"), gizmo("2026-01-02T00:00:00Z", "wd")),
                          (gizmo("2026-01-02T00:00:00Z", "wd"), widget("2026-01-01T00:00:00Z", "wd"))):
        registry, controller = decide(first, second)
        assert [info.plural for info in registry.custom] == ["widgets"]
        assert controller.conflicts == {"widgets.example.com": None,
                                        "gizmos.example.com": ("ShortNamesConflict", '"wd" is already in use')}


def test_both_are_served_without_a_clash_and_removed_when_gone():
    registry, _ = decide(widget("2026-01-01T00:00:00Z", "wd"), gizmo("2026-01-02T00:00:00Z", "gz"))
    assert sorted(info.plural for info in registry.custom) == ["gizmos", "widgets"]
    assert registry.lookup("gz").plural == "gizmos" and registry.get("example.com", "v1", "widgets") is not None
    registry, _ = decide()
    assert registry.custom == () and registry.get("example.com", "v1", "widgets") is None


def test_status_conditions_and_their_transition_times():
    accepted = with_status(widget("2026-01-01T00:00:00Z", "wd"), None, "T1")
    conditions = {c["type"]: (c["status"], c["reason"], c["lastTransitionTime"]) for c in accepted["status"]["conditions"]}
    assert conditions == {"NamesAccepted": ("True", "NoConflicts", "T1"),
                          "Established": ("True", "InitialNamesAccepted", "T1")}
    assert accepted["status"]["acceptedNames"]["shortNames"] == ["wd"]
    assert with_status(accepted, None, "T2") == accepted  # nothing changed: nothing to write
    deleting = {**accepted, "metadata": {**accepted["metadata"], "deletionTimestamp": "T3"}}
    terminating = {c["type"]: (c["status"], c["lastTransitionTime"])
                   for c in with_status(deleting, None, "T3")["status"]["conditions"]}
    assert terminating == {"NamesAccepted": ("True", "T1"), "Established": ("True", "T1"), "Terminating": ("True", "T3")}
    refused = with_status(widget("2026-01-01T00:00:00Z", "wd"), ("KindConflict", '"Widget" is already in use'), "T1")
    assert [(c["type"], c["status"], c["reason"]) for c in refused["status"]["conditions"]] == [
        ("NamesAccepted", "False", "KindConflict"), ("Established", "False", "NotAccepted")]
    assert "acceptedNames" not in refused["status"]
