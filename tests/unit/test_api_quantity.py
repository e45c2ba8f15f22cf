"""Quantities, with the examples of the Kubernetes docs (Resource Management for Pods)."""

from decimal import Decimal

import pytest

from pkube.api.quantity import QuantityError, cpu_millicores, memory_bytes, parse_quantity


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("1", 1), ("100m", Decimal("0.1")), ("1.5", Decimal("1.5")), ("+2", 2), ("-3", -3),
    (".5", Decimal("0.5")), ("5.", 5),
    ("1k", 1000), ("1M", 10**6), ("1G", 10**9), ("1T", 10**12), ("1P", 10**15), ("1E", 10**18),
    ("1Ki", 1024), ("1Mi", 2**20), ("1.5Gi", 1610612736), ("1Ti", 2**40), ("1Pi", 2**50), ("1Ei", 2**60),
    ("129e6", 129000000), ("129E6", 129000000), ("1e-3", Decimal("0.001")), ("12e+2", 1200),
    (2, 2), (0.25, Decimal("0.25")),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", [
    "", "abc", "1x", "1KiB", "1 Gi", " 1", "1e", "Mi", "1.2.3", "--1", "1ki", "1e1000", None, True,
    float("inf"), [1],
])
def test_parse_quantity_rejects(text):
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize("text, millicores", [
    ("1", 1000), ("0.5", 500), ("500m", 500), ("250m", 250), ("0.1", 100), ("2", 2000),
    ("1.0001", 1001), ("1m", 1), (3, 3000),
])
def test_cpu_millicores(text, millicores):
    assert cpu_millicores(text) == millicores


@pytest.mark.parametrize("text, size", [
    ("128974848", 128974848), ("129e6", 129000000), ("129M", 129000000), ("128974848000m", 128974848),
    ("123Mi", 128974848), ("64Mi", 67108864), ("1Gi", 1073741824), ("1.5", 2),
])
def test_memory_bytes(text, size):
    assert memory_bytes(text) == size
