"""Imperative writes: delete (with --wait), label, annotate, patch, scale, edit, create secret|namespace."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from pkube.kubectl.apply import PATCH_TYPES, apply_patch
from pkube.kubectl.errors import CliError
from pkube.kubectl.session import ApiResource, Session

DEFAULT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Target:
    """One object a command acts on."""

    resource: ApiResource
    name: str
    namespace: Optional[str]

    @property
    def label(self) -> str:
        return f"{self.resource.qualified}/{self.name}"

    @property
    def path(self) -> str:
        from pkube.client.resources import resource_path

        return resource_path(self.resource, self.namespace, self.name)


def targets_from_words(session: Session, words: list[str], what: str = "resource") -> list[Target]:
    """``TYPE NAME...`` or ``TYPE/NAME...`` as targets in the command's namespace."""
    if not words:
        raise CliError(f"you must specify the type of {what} and a name")
    if "/" in words[0]:
        found = []
        for word in words:
            kind, _, name = word.partition("/")
            res = session.resolve(kind)
            found.append(Target(res, name, session.object_namespace(res)))
        return found
    if any("/" in word for word in words[1:]):
        raise CliError("there is no need to specify a resource type as a separate argument when passing "
                       "arguments in resource/name form (e.g. 'pkubectl get resource/<resource_name>' instead of "
                       "'pkubectl get resource resource/<resource_name>'")
    res = session.resolve(words[0])
    if len(words) < 2:
        raise CliError("resource(s) were provided, but no name was specified")
    return [Target(res, name, session.object_namespace(res)) for name in words[1:]]


def targets_by_selector(session: Session, kind: str, selector: Optional[str], all_namespaces: bool) -> list[Target]:
    """Every object of ``kind`` matching ``selector`` (every object when None)."""
    found = []
    for res in session.resolve_many(kind):
        namespace = None if all_namespaces else session.object_namespace(res)
        listed = session.client.list_all(res, namespace, selector)
        for obj in listed.get("items") or []:
            meta = obj.get("metadata") or {}
            found.append(Target(res, meta.get("name", ""), meta.get("namespace") if res.namespaced else None))
    return found


def target_of_object(session: Session, obj: dict) -> Target:
    res = session.for_object(obj)
    return Target(res, (obj.get("metadata") or {}).get("name", ""), session.object_namespace(res, obj))


# ---------------------------------------------------------------- delete

def delete_targets(session: Session, targets: Iterable[Target], *, grace_period: Optional[int] = None,
                   wait: bool = True, ignore_not_found: bool = False, timeout: float = DEFAULT_WAIT_SECONDS,
                   cascade: str = "background", out=None, force: bool = False) -> int:
    """DELETE each target (printing ``pod "web" deleted``), then wait for them to be gone."""
    from pkube.client.errors import NotFound

    failures, deleted = 0, []
    policy = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}[cascade]
    for target in targets:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}
        if grace_period is not None and grace_period >= 0:
            body["gracePeriodSeconds"] = grace_period
        try:
            session.request("DELETE", target.path, body=json.dumps(body).encode(), content_type="application/json")
        except NotFound as err:
            if not ignore_not_found:
                _print_api_error(err)
                failures += 1
            continue
        out.write(f'{target.resource.qualified} "{target.name}" {"force deleted" if force else "deleted"}\n')
        out.flush()
        deleted.append(target)
    if wait:
        for target in deleted:
            wait_deleted(session, target, timeout)
    return 1 if failures else 0


def _print_api_error(err) -> None:
    import sys

    sys.stderr.write(f"Error from server ({err.reason}): {err.message}\n")


def wait_deleted(session: Session, target: Target, timeout: float) -> None:
    """Block until ``target`` is gone (a list by metadata.name, then a watch from its revision);
    CliError ``timed out waiting for the condition on pods/x`` after ``timeout`` seconds."""
    from pkube.kubectl.waiting import WaitFor, wait_one

    wait_one(session, target, WaitFor("delete"), time.monotonic() + timeout)


# ---------------------------------------------------------------- label / annotate / patch

def parse_key_values(words: list[str], what: str) -> tuple[dict, list[str]]:
    """``k=v`` settings and ``k-`` removals; raises CliError on anything else."""
    settings, removals = {}, []
    for word in words:
        if word.endswith("-") and "=" not in word:
            removals.append(word[:-1])
        elif "=" in word and word.split("=", 1)[0]:
            key, value = word.split("=", 1)
            settings[key] = value
        else:
            raise CliError(f"invalid {what} spec: {word}")
    return settings, removals


def set_metadata_map(session: Session, target: Target, field: str, settings: dict, removals: list[str],
                     overwrite: bool) -> str:
    """Set/remove labels or annotations of one object; returns kubectl's line."""
    current = session.get_json(target.path)
    existing = (current.get("metadata") or {}).get(field) or {}
    for key, value in settings.items():
        if key in existing and existing[key] != value and not overwrite:
            raise CliError(f"'{key}' already has a value ({existing[key]}), and --overwrite is false")
    changes = {**settings, **{key: None for key in removals if key in existing}}
    verb = "labeled" if field == "labels" else "annotated"
    if all(existing.get(k) == v for k, v in settings.items()) and not any(k in existing for k in removals):
        return f"{target.label} not {verb}"
    patch = {"metadata": {field: changes, "resourceVersion": current["metadata"].get("resourceVersion")}}
    send_patch(session, target, patch, "merge")
    return f"{target.label} {verb}"


def send_patch(session: Session, target: Target, patch, patch_type: str, subresource: str = "") -> dict:
    if patch_type not in PATCH_TYPES:
        raise CliError(f"--type must be one of [json merge strategic], not \"{patch_type}\"")
    path = target.path + (f"/{subresource}" if subresource else "")
    return session.request("PATCH", path, body=json.dumps(patch).encode(),
                           content_type=PATCH_TYPES[patch_type]).json()


def patch_target(session: Session, target: Target, text: str, patch_type: str) -> str:
    """``kubectl patch``: returns ``deployment.apps/web patched`` (or ``(no change)``)."""
    import yaml

    from pkube.kubectl.manifests import yaml_problem

    try:
        patch = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CliError(f"unable to parse \"{text}\": {yaml_problem(err)}") from None
    before = session.get_json(target.path)
    after = send_patch(session, target, patch, patch_type)
    unchanged = _without_version(before) == _without_version(after)
    return f"{target.label} patched" + (" (no change)" if unchanged else "")


def _without_version(obj: dict) -> dict:
    clean = dict(obj, metadata=dict(obj.get("metadata") or {}))
    clean["metadata"].pop("resourceVersion", None)
    clean["metadata"].pop("managedFields", None)
    return clean


def scale_target(session: Session, target: Target, replicas: int, current_replicas: Optional[int]) -> str:
    """PATCH the scale subresource; returns ``deployment.apps/web scaled``."""
    if replicas < 0:
        raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    if current_replicas is not None:
        scale = session.get_json(target.path + "/scale")
        if (scale.get("spec") or {}).get("replicas", 0) != current_replicas:
            raise CliError(f"Expected replicas to be {current_replicas}, was {(scale.get('spec') or {}).get('replicas', 0)}")
    send_patch(session, target, {"spec": {"replicas": replicas}}, "merge", "scale")
    return f"{target.label} scaled"


# ---------------------------------------------------------------- edit

def edit_target(session: Session, target: Target, editor: Optional[str] = None) -> str:
    """Open the object in $EDITOR (YAML); patch what changed. Returns kubectl's line."""
    import yaml

    from pkube.kubectl.printers import dump_yaml

    current = session.get_json(target.path)
    editor_cmd = editor or os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="pkubectl-edit-") as tmp:
        path = Path(tmp) / f"{target.resource.plural}-{target.name}.yaml"
        original_text = dump_yaml(current)
        path.write_text(original_text)
        result = subprocess.run([*shlex.split(editor_cmd), str(path)])
        if result.returncode != 0:
            raise CliError(f"there was a problem with the editor \"{editor_cmd}\"")
        edited_text = path.read_text()
    if edited_text == original_text:
        return "Edit cancelled, no changes made."
    try:
        edited = yaml.safe_load(edited_text)
    except yaml.YAMLError as err:
        raise CliError(f"the edited file is not valid YAML: {err}") from None
    patch, patch_type = apply_patch(current, edited, current)
    if not patch:
        return "Edit cancelled, no changes made."
    send_patch(session, target, patch, patch_type)
    return f"{target.label} edited"


# ---------------------------------------------------------------- create secret / namespace

def secret_from_sources(name: str, namespace: str, literals: list[str], files: list[str],
                        secret_type: str = "Opaque") -> dict:
    """A Secret built from ``--from-literal=k=v`` and ``--from-file=[k=]path``."""
    data = {}
    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise CliError(f"invalid literal source {literal}, expected key=value")
        _put(data, key, value.encode())
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = Path(spec).name, spec
        try:
            content = Path(path).read_bytes()
        except OSError as err:
            raise CliError(f"error reading {path}: {err.strerror}") from None
        _put(data, key, content)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": secret_type, "data": data}


def _put(data: dict, key: str, value: bytes) -> None:
    if key in data:
        raise CliError(f"cannot add key {key}, another key by that name already exists in Data")
    data[key] = base64.b64encode(value).decode()
