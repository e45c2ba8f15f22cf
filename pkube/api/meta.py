"""Object metadata helpers shared by the apiserver and clients.

Pure functions over Kubernetes object dicts: timestamps, uids, generateName
suffixes, and the server-owned fields a create or update must (re)set.
"""

from __future__ import annotations

import datetime
import random
import uuid
from typing import Optional

GENERATE_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet
GENERATE_SUFFIX_LENGTH = 5
MAX_GENERATE_PREFIX = 58  # 63 - 5: generated names stay valid DNS labels

SERVER_OWNED_FIELDS = ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                       "deletionGracePeriodSeconds", "resourceVersion", "selfLink")


def now_rfc3339(clock: Optional[datetime.datetime] = None) -> str:
    """The current UTC time as Kubernetes writes it: '2024-01-02T03:04:05Z'."""
    moment = clock or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str, rng: Optional[random.Random] = None) -> str:
    """``prefix`` (truncated so the result fits 63 chars) plus a random 5-char suffix."""
    pick = (rng or random).choice
    suffix = "".join(pick(GENERATE_SUFFIX_ALPHABET) for _ in range(GENERATE_SUFFIX_LENGTH))
    return prefix[:MAX_GENERATE_PREFIX] + suffix


def metadata(obj: dict) -> dict:
    """The object's metadata dict, created when missing (or not a dict)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def name_of(obj: dict) -> str:
    meta = obj.get("metadata")
    return meta.get("name", "") if isinstance(meta, dict) else ""


def namespace_of(obj: dict) -> str:
    meta = obj.get("metadata")
    return meta.get("namespace", "") if isinstance(meta, dict) else ""


def labels_of(obj: dict) -> dict:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def stamp_new(obj: dict, clock: Optional[datetime.datetime] = None) -> dict:
    """Set the server-owned metadata of an object being created (in place)."""
    meta = metadata(obj)
    for field_name in SERVER_OWNED_FIELDS:
        meta.pop(field_name, None)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now_rfc3339(clock)
    meta["generation"] = 1
    return obj


def carry_server_fields(new: dict, old: dict) -> dict:
    """Copy the server-owned metadata of ``old`` onto ``new`` (an update), in place.

    resourceVersion is left alone: the client's value is the optimistic-lock token.
    """
    meta, old_meta = metadata(new), old.get("metadata", {})
    for field_name in SERVER_OWNED_FIELDS:
        if field_name == "resourceVersion":
            continue
        if field_name in old_meta:
            meta[field_name] = old_meta[field_name]
        else:
            meta.pop(field_name, None)
    return new
