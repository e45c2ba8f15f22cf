"""Reading ``-f`` sources: files, directories (``-R``), ``-``; YAML streams and JSON.

Every object remembers where it came from (file and document number) so that
errors read ``web.yaml: document 2: spec.replicas: Invalid value...``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, TextIO

from pkube.kubectl.errors import CliError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Manifest:
    """One object of a -f source; ``document`` counts from 1 within ``source``."""

    source: str
    document: int
    obj: dict

    @property
    def where(self) -> str:
        return f"{self.source}: document {self.document}"


def manifest_files(paths: Iterable[str], recursive: bool) -> list[str]:
    """The files named by ``-f`` values, directories expanded (sorted); "-" kept as is."""
    found: list[str] = []
    for raw in paths:
        if raw == "-":
            found.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(str(p) for p in sorted(path.glob(pattern)) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        elif path.exists():
            found.append(raw)
        else:
            raise CliError(f"the path \"{raw}\" does not exist")
    return found


def read_manifests(paths: Iterable[str], recursive: bool = False, stdin: Optional[TextIO] = None) -> list[Manifest]:
    """Every object of every source, ``List`` kinds expanded; raises CliError on bad input."""
    manifests: list[Manifest] = []
    for source in manifest_files(paths, recursive):
        text = (stdin or sys.stdin).read() if source == "-" else _read(source)
        manifests.extend(parse_documents(text, "STDIN" if source == "-" else source))
    if not manifests:
        raise CliError("no objects passed to apply")
    return manifests


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"read {path}: {getattr(err, 'strerror', None) or err}") from None


def parse_documents(text: str, source: str) -> list[Manifest]:
    """The objects of one YAML stream (JSON is YAML); broken YAML names its line."""
    import yaml

    out: list[Manifest] = []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise CliError(f"error parsing {source}: {_yaml_problem(err)}") from None
    number = 0
    for doc in documents:
        if doc is None:
            continue
        number += 1
        for obj in _expand(doc, source, number):
            out.append(Manifest(source, number, obj))
    return out


def yaml_problem(err) -> str:
    """A YAML error as one line: ``line N: problem``."""
    return _yaml_problem(err)


def _yaml_problem(err) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"line {mark.line + 1}: {problem}"
    return problem


def _expand(doc, source: str, number: int) -> list[dict]:
    if not isinstance(doc, dict):
        raise CliError(f"{source}: document {number}: expected an object, got {type(doc).__name__}")
    if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
        return [_checked(item, source, number) for item in doc["items"]]
    return [_checked(doc, source, number)]


def _checked(obj, source: str, number: int) -> dict:
    if not isinstance(obj, dict):
        raise CliError(f"{source}: document {number}: expected an object")
    missing = [f for f in ("apiVersion", "kind") if not obj.get(f)]
    if missing:
        raise CliError(f"{source}: document {number}: {missing[0]}: Required value: "
                       f"error validating data: {missing[0]} not set")
    return obj


def validate_manifests(manifests: list[Manifest], strict: bool = True) -> None:
    """Client-side validation (schemas + Kubernetes rules); raises CliError with every problem."""
    from pkube.api.validation import Validator

    validator = Validator()
    problems = []
    for manifest in manifests:
        for cause in validator.validate(manifest.obj, strict=strict):
            field = cause.get("field") or "<object>"
            problems.append(f"{manifest.where}: {field}: {cause.get('message', '')}")
    if problems:
        raise CliError("; ".join(problems))
