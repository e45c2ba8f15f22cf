"""`kubectl get pdb` and `kubectl get hpa` cells (pkube/apiserver/tables_policy.py)."""

import datetime as dt

from pkube.apiserver.tables import cells_for, columns_for
from pkube.apiserver.tables_policy import format_targets

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def resource(name, **target):
    return {"type": "Resource", "resource": {"name": name, "target": target}}


def current(name, **values):
    return {"type": "Resource", "resource": {"name": name, "current": values}}


def test_targets_as_kubectl_132_prints_them():
    specs = [resource("cpu", type="Utilization", averageUtilization=50),
             resource("memory", type="AverageValue", averageValue="100Mi"),
             resource("cpu", type="Utilization", averageUtilization=90)]
    statuses = [current("cpu", averageUtilization=45, averageValue="22m"), current("memory", averageValue="80Mi")]
    assert format_targets(specs[:1], statuses) == "cpu: 45%/50%"
    assert format_targets(specs, statuses) == "cpu: 45%/50%, memory: 80Mi/100Mi + 1 more..."
    assert format_targets(specs[:1], []) == "cpu: <unknown>/50%"
    assert format_targets([], []) == "<none>"


def test_pdb_and_hpa_rows():
    pdb = {"metadata": {"name": "web", "creationTimestamp": "2025-12-31T23:59:00Z"},
           "spec": {"maxUnavailable": "25%"}, "status": {"disruptionsAllowed": 1}}
    assert [c.name for c in columns_for("poddisruptionbudgets")] == [
        "Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]
    assert cells_for("poddisruptionbudgets", pdb, NOW) == ["web", "N/A", "25%", 1, "60s"]
    v1 = {"apiVersion": "autoscaling/v1", "metadata": {"name": "web", "creationTimestamp": "2025-12-31T23:59:00Z"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                   "targetCPUUtilizationPercentage": 50},
          "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 61}}
    assert cells_for("horizontalpodautoscalers", v1, NOW) == [
        "web", "Deployment/web", "cpu: 61%/50%", "<unset>", 4, 2, "60s"]
