"""Table columns of PodDisruptionBudgets and HorizontalPodAutoscalers, as kubectl prints them
(Kubernetes' printers.go, the 1.32 TARGETS format "cpu: 45%/50%"). Imported at the end of
``apiserver.tables``; registers itself in its ``PRINTERS``."""

from __future__ import annotations

import datetime

from pkube.api import autoscaling
from pkube.apiserver import tables
from pkube.apiserver.tables import AGE, NAME, Column, _meta, age_since

UNKNOWN = "<unknown>"
SHOWN_METRICS = 2

PDB_COLUMNS = (
    NAME,
    Column("Min Available", description="The minimum number of pods that must be available simultaneously. "
                                        "This can be either an integer or a string specifying a percentage, "
                                        "e.g. \"28%\"."),
    Column("Max Unavailable", description="The maximum number of pods that may be unavailable simultaneously. "
                                          "This can be either an integer or a string specifying a percentage, "
                                          "e.g. \"28%\"."),
    Column("Allowed Disruptions", type="integer", description="Calculated number of pods that may be disrupted "
                                                              "at this time."),
    AGE,
)

HPA_COLUMNS = (
    NAME,
    Column("Reference", description="Reference to the target resource."),
    Column("Targets", description="Current and target value of the metrics."),
    Column("MinPods", description="Minimum number of pods."),
    Column("MaxPods", type="integer", description="Maximum number of pods."),
    Column("Replicas", type="integer", description="Current number of replicas of pods managed by this autoscaler."),
    AGE,
)


def _pdb_cells(obj: dict, now: datetime.datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    shown = [str(spec[k]) if spec.get(k) is not None else "N/A" for k in ("minAvailable", "maxUnavailable")]
    return [_meta(obj).get("name", ""), *shown, int(status.get("disruptionsAllowed", 0)),
            age_since(_meta(obj).get("creationTimestamp"), now)]


def _hpa_cells(obj: dict, now: datetime.datetime) -> list:
    if obj.get("apiVersion") == "autoscaling/v1":
        obj = autoscaling.to_v2(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [_meta(obj).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            format_targets(spec.get("metrics") or [], status.get("currentMetrics") or []),
            str(low) if low is not None else "<unset>", int(spec.get("maxReplicas") or 0),
            int(status.get("currentReplicas") or 0), age_since(_meta(obj).get("creationTimestamp"), now)]


def format_targets(specs: list, statuses: list) -> str:
    """kubectl's TARGETS: "cpu: 45%/50%" per metric, the first two, then "+ N more..."."""
    if not specs:
        return "<none>"
    shown = [_metric_text(spec, statuses[i] if i < len(statuses) else {}) for i, spec in enumerate(specs)]
    text = ", ".join(shown[:SHOWN_METRICS])
    return f"{text} + {len(specs) - SHOWN_METRICS} more..." if len(specs) > SHOWN_METRICS else text


def _metric_text(spec: dict, status: dict) -> str:
    kind = spec.get("type") or ""
    field = kind[:1].lower() + kind[1:]
    source, current = spec.get(field) or {}, (status.get(field) or {}).get("current") or {}
    target = source.get("target") or {}
    if kind in ("Resource", "ContainerResource"):
        name = source.get("name", "")
        if target.get("averageValue") is not None:
            return f"{name}: {current.get('averageValue', UNKNOWN)}/{target['averageValue']}"
        used = current.get("averageUtilization")
        wanted = target.get("averageUtilization")
        return (f"{name}: {f'{used}%' if used is not None else UNKNOWN}/"
                f"{f'{wanted}%' if wanted is not None else '<auto>'}")
    wanted = target.get("averageValue") or target.get("value") or target.get("averageUtilization")
    value = current.get("averageValue") or current.get("value") or UNKNOWN
    return f"{value}/{wanted}"


tables.PRINTERS["poddisruptionbudgets"] = (PDB_COLUMNS, _pdb_cells)
tables.PRINTERS["horizontalpodautoscalers"] = (HPA_COLUMNS, _hpa_cells)
