"""``metadata.managedFields``: who owns which field, kept on every write (server-side apply).

Pure functions over objects and ``Entry`` lists, after Kubernetes' field manager
(k8s.io/apimachinery/pkg/util/managedfields and structured-merge-diff's ``merge.Updater``):

- ``update(...)``: an Update operation (create, PUT, the non-apply patches, status writes):
  the writer takes over every field it added or changed, and a removed field leaves all owners;
- ``apply(...)``: an Apply operation: the applier's set becomes exactly the fields of its
  configuration; fields it applied before and dropped now are removed unless someone else owns
  them; a changed field owned by another manager is a conflict (``ApplyConflict``) unless forced,
  and forcing takes it over; managers applying the same value share it;
- ``upgrade_conflicts(...)``: the client-side-apply upgrade (``lastAppliedManager``): a conflict
  on a field whose live value still equals the ``last-applied-configuration`` is no conflict for
  kubectl's manager; ``sync_last_applied`` then rewrites that annotation (``lastAppliedUpdater``).

Sets are FieldsV1 trees (pkube/api/fieldpath.py); types come from pkube/api/fieldtypes.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Optional

from pkube.api import fieldpath
from pkube.api.fieldpath import difference, intersection, union
from pkube.api.fieldtypes import LIST, STRUCT, FieldType
from pkube.api.typedvalue import MISSING, compare, ensure_named_fields, field_set, merge, remove_items, whole

APPLY, UPDATE = "Apply", "Update"
FIELDS_TYPE = "FieldsV1"
KUBECTL = "kubectl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_MANAGER_LENGTH = 128
MAX_UPDATERS = 10
ANCIENT_CHANGES = "ancient-changes"
# Fields no manager owns (Kubernetes' stripMetaManager): identity and server bookkeeping.
STRIPPED = {"f:apiVersion": {}, "f:kind": {}, "f:metadata": {
    ".": {}, "f:name": {}, "f:namespace": {}, "f:creationTimestamp": {}, "f:selfLink": {}, "f:uid": {},
    "f:clusterName": {}, "f:generation": {}, "f:managedFields": {}, "f:resourceVersion": {}}}
# Nested structs that Kubernetes' Go types hold by value (the rest are pointers: a new one is
# "added" with a "." entry): the JSON schemas do not tell, so they are named here.
VALUE_STRUCTS = frozenset((
    "metadata", "spec", "status", "template", "strategy", "updateStrategy", "resources", "jobTemplate",
    "scaleTargetRef", "involvedObject", "source", "roleRef", "names", "acceptedNames", "daemonEndpoints",
    "kubeletEndpoint", "nodeInfo", "state", "lastState", "conditions", "backend"))
_STRIPPED_ROOT = frozenset(("apiVersion", "kind"))
_STRIPPED_META = frozenset(e[2:] for e in STRIPPED["f:metadata"] if e != ".")


@dataclass(frozen=True)
class Entry:
    """One managedFields entry; ``fields`` is its FieldsV1 set, ``time`` RFC 3339 or None."""

    manager: str
    operation: str
    api_version: str
    fields: dict
    time: Optional[str] = None
    subresource: str = ""

    @property
    def key(self) -> tuple:
        """Who this entry belongs to: an applier is one manager whatever version it applied."""
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """The manager as Kubernetes names it in a conflict."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == UPDATE else text


class ApplyConflict(Exception):
    """An apply changing fields other managers own; ``conflicts`` is [(entry, path)]."""

    def __init__(self, conflicts: list[tuple[Entry, tuple]]):
        self.conflicts = sorted(conflicts, key=lambda c: (c[0].describe(), fieldpath.path_string(c[1])))
        super().__init__(self.message())

    def message(self) -> str:
        """Kubernetes' text: one conflict on one line, several grouped by manager."""
        if len(self.conflicts) == 1:
            entry, path = self.conflicts[0]
            return f"Apply failed with 1 conflict: conflict with {entry.describe()}: {fieldpath.path_string(path)}"
        lines = []
        for name in sorted({entry.describe() for entry, _ in self.conflicts}):
            lines.append(f"conflicts with {name}:")
            lines += [f"- {fieldpath.path_string(path)}" for entry, path in self.conflicts
                      if entry.describe() == name]
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {entry.describe()}",
                 "field": fieldpath.path_string(path)} for entry, path in self.conflicts]


# ---- the wire form --------------------------------------------------------------------------------

def decode(obj: dict) -> Optional[list[Entry]]:
    """The entries of an object's metadata.managedFields ([] when absent); None when they
    cannot be read (a client wrote garbage: they are dropped, as Kubernetes does)."""
    raw = (obj.get("metadata") or {}).get("managedFields")
    if not raw:
        return []
    if not isinstance(raw, list):
        return None
    entries = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("fieldsV1", {}), dict) \
                or not isinstance(item.get("manager", ""), str):
            return None
        entries.append(Entry(item.get("manager", ""), item.get("operation", ""), item.get("apiVersion", ""),
                             item.get("fieldsV1") or {}, item.get("time"), item.get("subresource", "")))
    return entries


def is_reset(obj: dict) -> bool:
    """True when a client asks to drop all managedFields (``managedFields: [{}]``)."""
    return (obj.get("metadata") or {}).get("managedFields") == [{}]


def encode(entries: list[Entry]) -> list[dict]:
    """managedFields as Kubernetes writes them: appliers first, then by time, manager, version
    (each set is written as it is: the operations keep the ones they make canonical)."""
    ordered = sorted(entries, key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    out = []
    for entry in ordered:
        item = {"manager": entry.manager, "operation": entry.operation, "apiVersion": entry.api_version}
        if entry.time:
            item["time"] = entry.time
        item["fieldsType"] = FIELDS_TYPE
        item["fieldsV1"] = entry.fields
        if entry.subresource:
            item["subresource"] = entry.subresource
        out.append(item)
    return out


def store(obj: dict, entries: list[Entry]) -> dict:
    """Put ``entries`` on ``obj`` (in place; none: the field goes) and return it."""
    md = obj.setdefault("metadata", {})
    if entries:
        md["managedFields"] = encode(entries)
    else:
        md.pop("managedFields", None)
    return obj


# ---- operations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Operation:
    """Who writes, at which version and through which subresource ("" or "status")."""

    manager: str
    api_version: str
    subresource: str
    now: str


def create(obj: dict, entries: list[Entry], op: Operation, node: FieldType, custom: bool = False) -> list[Entry]:
    """The entries of a new object: its creator owns every field it set, counted as Kubernetes
    does by comparing it with the empty object of its type. For a built-in kind that is a Go
    struct whose value-typed nested structs (VALUE_STRUCTS) exist, so they are not "added"
    themselves, and whose required lists are null; for a custom resource it is an empty map."""
    if custom:
        added = {"f:" + key: whole(value, node.child(key)[0]) for key, value in sorted(obj.items())}
        return _record(entries, difference(added, STRIPPED), {}, op)
    return _record(entries, _creation_set(obj, node, True, _STRIPPED_ROOT), {}, op)


def _creation_set(obj: dict, node: FieldType, top: bool, skip=frozenset()) -> dict:
    tree = {}
    required = node.required
    for key in sorted(obj):
        if key in skip:
            continue
        value = obj[key]
        if value.__class__ is not dict and value.__class__ is not list:
            tree["f:" + key] = {}
            continue
        child, declared = node.child(key)
        if declared and child.kind == STRUCT and not child.atomic and isinstance(value, dict) \
                and (top or (value and key in VALUE_STRUCTS)):
            sub = _creation_set(value, child, False, _STRIPPED_META if top and key == "metadata" else ())
            if sub:
                tree["f:" + key] = sub
        elif declared and key in required and child.kind == LIST and isinstance(value, list):
            tree["f:" + key] = fieldpath.children(whole(value, child)) if value else {}
        else:
            tree["f:" + key] = whole(value, child)
    return tree


def update(live: dict, new: dict, entries: list[Entry], op: Operation, node: FieldType) -> list[Entry]:
    """The entries after an Update from ``live`` to ``new``: ``op.manager`` owns what it added or
    changed (on top of what it owned), other managers lose those fields, removed fields leave
    everyone. Its entry's time moves only when it changed something."""
    comparison = compare(live, new, node)
    changed = fieldpath.canonical(difference(comparison.changed(), STRIPPED))
    return _record(entries, changed, comparison.removed, op)


def _record(entries: list[Entry], changed: dict, removed: dict, op: Operation) -> list[Entry]:
    if not entries:
        return [Entry(op.manager, UPDATE, op.api_version, changed, op.now, op.subresource)] if changed else []
    mine = Entry(op.manager, UPDATE, op.api_version, {}, None, op.subresource)
    previous, out = None, []
    for entry in entries:
        fields = difference(difference(entry.fields, changed), removed)
        if entry.key == mine.key:
            previous = replace(entry, fields=fields)
        elif fields:
            out.append(entry if fields == entry.fields else replace(entry, fields=fields))
    if changed:
        fields = fieldpath.canonical(union(previous.fields, changed)) if previous else changed
        out.append(replace(mine, fields=fields, time=op.now))
    elif previous is not None and previous.fields:
        out.append(previous)
    return cap_updaters(out)


def cap_updaters(entries: list[Entry], limit: int = MAX_UPDATERS) -> list[Entry]:
    """At most ``limit`` Update entries: the oldest are merged, per apiVersion, into one
    ``ancient-changes`` entry carrying the newest merged time (Kubernetes' capManagers)."""
    updaters = sorted((e for e in entries if e.operation == UPDATE), key=lambda e: e.time or "")
    if len(updaters) <= limit:
        return entries
    merged: dict[str, Entry] = {}
    excess = len(updaters) - limit
    for entry in updaters:
        if excess <= 0:
            break
        bucket = merged.get(entry.api_version)
        if bucket is None:
            merged[entry.api_version] = replace(entry, manager=ANCIENT_CHANGES, subresource="")
            continue
        merged[entry.api_version] = replace(bucket, fields=fieldpath.canonical(union(bucket.fields, entry.fields)),
                                            time=entry.time)
        excess -= 1
    gone = {id(e) for e in updaters[:len(updaters) - limit + len(merged)]}
    return [e for e in entries if id(e) not in gone] + list(merged.values())


def apply(live: dict, config: dict, entries: list[Entry], op: Operation, node: FieldType,
          force: bool) -> tuple[dict, list[Entry]]:
    """Apply ``config`` as ``op.manager`` onto ``live``; returns the new object (managedFields
    not yet stored on it) and the entries. Raises ApplyConflict, changing nothing."""
    applied = fieldpath.canonical(difference(field_set(config, node), STRIPPED))
    mine = Entry(op.manager, APPLY, op.api_version, applied, None, op.subresource)
    last = next((e for e in entries if e.key == mine.key), None)
    others = [e for e in entries if e.key != mine.key]
    new = merge(live, config, node)
    if last is not None and last.fields:
        new = _prune(new, last.fields, [e.fields for e in others] + [applied], node)
    comparison = compare(live, new, node)
    changed = comparison.changed()
    conflicts = [(entry, path) for entry in others
                 for path in fieldpath.paths(intersection(entry.fields, changed))]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    out = []
    for entry in others:
        fields = difference(difference(entry.fields, changed), comparison.removed)
        if fields:
            out.append(entry if fields == entry.fields else replace(entry, fields=fields))
    time = op.now if not comparison.empty() else (last.time if last is not None else None)
    if applied:
        out.append(replace(mine, time=time))
    return new, out


def _prune(merged: dict, last: dict, owned_sets: list[dict], node: FieldType) -> dict:
    """Remove what the applier applied last time and no longer does, unless someone owns it."""
    owned: dict = {}
    for fields in owned_sets:
        owned = union(owned, fields)
    removal = difference(ensure_named_fields(last, node), ensure_named_fields(owned, node))
    pruned = remove_items(merged, removal, node)
    return {} if pruned is MISSING else pruned


# ---- the client-side apply upgrade --------------------------------------------------------------

def upgrade_conflicts(live: dict, conflict: ApplyConflict, node: FieldType) -> list[tuple[Entry, tuple]]:
    """The conflicts that remain once fields kubectl's last-applied-configuration set, and whose
    live values still match it, are allowed (an empty list: force the apply)."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return conflict.conflicts
    try:
        last_applied = json.loads(text)
    except ValueError:
        return conflict.conflicts
    if not isinstance(last_applied, dict):
        return conflict.conflicts
    allowed = difference(field_set(last_applied, node), compare(last_applied, live, node).modified)
    return [(entry, path) for entry, path in conflict.conflicts if not has(allowed, path)]


def sync_last_applied(new: dict, config: dict) -> None:
    """After kubectl's server-side apply, its last-applied annotation (if the object has one)
    becomes the applied configuration, so a later client-side apply computes the right patch."""
    annotations = (new.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(LAST_APPLIED):
        return
    body = json.loads(json.dumps(config))
    config_annotations = (body.get("metadata") or {}).get("annotations")
    if isinstance(config_annotations, dict):
        config_annotations.pop(LAST_APPLIED, None)
        if not config_annotations:
            del body["metadata"]["annotations"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    new["metadata"]["annotations"] = {**annotations, LAST_APPLIED: text}


def has(tree: dict, path: tuple) -> bool:
    """True when ``path`` is a member of ``tree``."""
    level = tree
    for depth, element in enumerate(path):
        sub = level.get(element)
        if sub is None:
            return False
        if depth == len(path) - 1:
            return fieldpath.is_member(sub)
        level = fieldpath.children(sub)
    return False
