"""Taint and toleration matching: Kubernetes' ``Toleration.ToleratesTaint``, shared by the
scheduler (may a pod land on a tainted node) and the node lifecycle controller (must a pod
be evicted from one).

An empty ``effect`` or ``key`` in a toleration matches any; operator ``Exists`` then matches
any value, anything else compares values (a missing value is the empty string). Validation
rejects an empty key with any operator but ``Exists``, so such a toleration never gets here
from the apiserver.
"""


def tolerates(toleration: dict, taint: dict) -> bool:
    """Whether ``toleration`` tolerates ``taint`` (both as the API's dicts)."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations, taint: dict) -> bool:
    """Whether any of ``tolerations`` tolerates ``taint``."""
    return any(tolerates(t, taint) for t in tolerations)
