"""``cordon``, ``uncordon`` and ``taint``: node scheduling settings, as kubectl changes them.

The taint arithmetic (kubectl's reorganizeTaints) is pure and tested on its own; the
writes are JSON merge patches guarded by the resourceVersion read.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Optional

from pkube.kubectl.errors import CliError

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TAINTED, UNTAINTED, MODIFIED = "tainted", "untainted", "modified"
_QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                             r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def set_unschedulable(session, target, unschedulable: bool, dry_run: str = "none") -> str:
    """Cordon (True) or uncordon (False) one node; kubectl's line: ``node/n1 cordoned``, or
    ``node/n1 already cordoned`` when there was nothing to do. ``dry_run`` client writes
    nothing, server asks the server to check the write without making it."""
    from pkube.kubectl.apply import PATCH_TYPES, _dry_run_params, _suffix

    word = "cordoned" if unschedulable else "uncordoned"
    node = session.get_json(target.path)
    if bool((node.get("spec") or {}).get("unschedulable")) == unschedulable:
        return f"{target.label} already {word}"
    if dry_run != "client":
        patch = json.dumps({"spec": {"unschedulable": True if unschedulable else None}}).encode()
        session.request("PATCH", target.path, params=_dry_run_params(dry_run), body=patch,
                        content_type=PATCH_TYPES["merge"])
    return f"{target.label} {word}{_suffix(dry_run)}"


# ---------------------------------------------------------------- taints

@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""    # "" only in a removal by key

    def __str__(self) -> str:
        text = self.key + (f"={self.value}" if self.value else "")
        return text + (f":{self.effect}" if self.effect else "")

    def matches(self, other: dict) -> bool:
        """Same key and effect (kubectl's MatchTaint)."""
        return other.get("key") == self.key and other.get("effect") == self.effect


def parse_taint_specs(words: list[str]) -> tuple[list[Taint], list[Taint]]:
    """Taints to add (``k=v:Effect``, ``k:Effect``) and to remove (``k:Effect-``, ``k-``)."""
    adds, removals = [], []
    for word in words:
        if word.endswith("-"):
            removals.append(_parse_taint(word[:-1], removal=True))
        else:
            adds.append(_parse_taint(word, removal=False))
    keys_and_effects = [(t.key, t.effect) for t in adds]
    if len(set(keys_and_effects)) != len(keys_and_effects):
        raise CliError("can not add the same taint key and effect more than once")  # kubectl's check
    return adds, removals


def _parse_taint(spec: str, removal: bool) -> Taint:
    head, sep, effect = spec.partition(":")
    if not sep and not removal:
        raise CliError(f"invalid taint spec: {spec}")
    if sep and effect not in EFFECTS:
        raise CliError(f"invalid taint effect: {effect}, unsupported taint effect\n"
                       "See 'pkubectl taint -h' for help and examples")
    key, _, value = head.partition("=")
    if not _QUALIFIED_NAME.match(key) or not _LABEL_VALUE.match(value) or len(value) > 63:
        raise CliError(f"invalid taint spec: {spec}")
    return Taint(key, value, effect)


def reorganize_taints(node_name: str, current: list[dict], adds: list[Taint], removals: list[Taint],
                      overwrite: bool, now: Optional[datetime.datetime] = None) -> tuple[str, list[dict]]:
    """(kubectl's verb, the node's new taints): new ones first, then the old ones not replaced,
    less the removed ones. Raises CliError for an overwrite without ``--overwrite`` or a
    removal of a taint the node does not have (then nothing is written)."""
    if not overwrite:
        for taint in adds:
            if any(taint.matches(t) for t in current):
                raise CliError(f"node {node_name} already has {taint.key} taint(s) with same effect(s) "
                               "and --overwrite is false")
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [_taint_dict(t, stamp) for t in adds]
    new += [t for t in current if not any(a.matches(t) for a in adds)]
    added = len(new) != len(current)
    deleted = False
    for taint in removals:
        kept = [t for t in new if not (t.get("key") == taint.key and taint.effect in ("", t.get("effect")))]
        deleted = len(kept) != len(new)
        if not deleted:
            raise CliError(f"taint \"{taint}\" not found")
        new = kept
    if (added and deleted) or overwrite:
        return MODIFIED, new
    return (TAINTED if added else UNTAINTED), new


def _taint_dict(taint: Taint, stamp: str) -> dict:
    entry = {"key": taint.key, "effect": taint.effect}
    if taint.value:
        entry["value"] = taint.value
    if taint.effect == "NoExecute":
        entry["timeAdded"] = stamp
    return entry


def taint_node(session, target, adds: list[Taint], removals: list[Taint], overwrite: bool) -> str:
    """Apply the taint changes to one node; kubectl's line ``node/n1 tainted``."""
    from pkube.kubectl.mutate import send_patch

    node = session.get_json(target.path)
    current = (node.get("spec") or {}).get("taints") or []
    verb, taints = reorganize_taints(target.name, current, adds, removals, overwrite)
    patch = {"metadata": {"resourceVersion": (node.get("metadata") or {}).get("resourceVersion")},
             "spec": {"taints": taints or None}}
    send_patch(session, target, patch, "merge")
    return f"{target.label} {verb}"
