"""Kubernetes timestamp formats: Time (seconds) and MicroTime (microseconds), UTC with 'Z'."""

from __future__ import annotations

import datetime as dt


def rfc3339(when: dt.datetime) -> str:
    """metav1.Time: 2026-01-01T00:00:00Z."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(when: dt.datetime) -> str:
    """metav1.MicroTime: 2026-01-01T00:00:00.000000Z."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
