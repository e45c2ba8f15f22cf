"""PodDisruptionBudget arithmetic shared by the eviction subresource and the disruption
controller (pure): int-or-percent scaling and the DisruptionAllowed condition."""

from __future__ import annotations

import math
from typing import Optional


def scaled_value(value, total: int, round_up: bool) -> int:
    """An IntOrString against ``total``, as Kubernetes' GetScaledValueFromIntOrPercent:
    an int as is, "N%" as N% of ``total`` rounded up or down. ValueError on anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    raise ValueError(f"invalid value for IntOrString: {value!r}")


def set_disruption_allowed(status: dict, allowed: bool, now: str, reason: Optional[str] = None,
                           message: str = "") -> None:
    """Set the DisruptionAllowed condition of a budget's ``status`` (in place), keeping its
    transition time while its status stays; reasons as Kubernetes: SufficientPods,
    InsufficientPods, or the given one (SyncFailed)."""
    reason = reason or ("SufficientPods" if allowed else "InsufficientPods")
    wanted = "True" if allowed else "False"
    conditions = status.get("conditions") or []
    old = next((c for c in conditions if c.get("type") == "DisruptionAllowed"), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == wanted else now
    condition = {"type": "DisruptionAllowed", "status": wanted, "reason": reason, "message": message,
                 "lastTransitionTime": since, "observedGeneration": status.get("observedGeneration", 0)}
    status["conditions"] = [c for c in conditions if c.get("type") != "DisruptionAllowed"] + [condition]
