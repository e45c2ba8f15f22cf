"""Kubernetes' strategic merge patch for built-in kinds."""

from __future__ import annotations


class PatchError(ValueError):
    """A patch that cannot be applied: bad shape, bad path, failed test, unknown directive."""
