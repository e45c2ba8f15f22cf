"""Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), as k8s.io/apimachinery's
resource.Quantity parses them.

Grammar: a signed decimal number followed by one optional suffix: a binary SI suffix (Ki, Mi,
Gi, Ti, Pi, Ei), a decimal SI suffix (m, k, M, G, T, P, E) or a decimal exponent (e3, E-2).
YAML may hand us a bare number (`cpu: 2`): ints and floats are accepted too.
"""

from __future__ import annotations

import decimal
import math
import re


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity."""


_QUANTITY_RE = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?"
)
_MULTIPLIERS = {
    None: 1, "n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6"), "m": decimal.Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9,
    "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_MAX_EXPONENT = 100  # far beyond any real quantity; refuses "1e999999999" cheaply
_CONTEXT = decimal.Context(prec=60)


def parse_quantity(text) -> decimal.Decimal:
    """The exact value of a quantity (`"1.5Gi"` → 1610612736). Raises QuantityError."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise QuantityError(f"quantity must be a string or a number, not {type(text).__name__}")
    if isinstance(text, (int, float)):
        if isinstance(text, float) and not math.isfinite(text):
            raise QuantityError(f"quantities must be finite: {text!r}")
        return decimal.Decimal(str(text))
    match = _QUANTITY_RE.fullmatch(text.strip()) if text.strip() == text else None
    if not match:
        raise QuantityError(
            f'quantities must match the regular expression '
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text!r})")
    number = decimal.Decimal(match["number"])
    suffix = match["suffix"]
    if suffix and suffix[0] in "eE" and suffix != "Ei" and len(suffix) > 1:
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"quantity {text!r} is out of range")
        return _CONTEXT.multiply(number, _CONTEXT.power(decimal.Decimal(10), exponent))
    return _CONTEXT.multiply(number, decimal.Decimal(_MULTIPLIERS[suffix]))


def milli_value(text) -> int:
    """The quantity in thousandths, rounded up like Quantity.MilliValue (`"0.5"` → 500, `"1m"` → 1)."""
    return math.ceil(parse_quantity(text) * 1000)


def cpu_millicores(text) -> int:
    """CPU in millicores (its milli_value)."""
    return milli_value(text)


def memory_bytes(text) -> int:
    """A byte count, rounded up like Quantity.Value (`"128Mi"` → 134217728)."""
    return math.ceil(parse_quantity(text))
