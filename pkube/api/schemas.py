"""The Kubernetes JSON schemas that the kubernetes-validate package ships (one file per kind
plus a shared `_definitions.json`), loaded once and navigated by field.

The strict variant is used everywhere: it is the same schema with `additionalProperties: false`,
so unknown fields show up as errors that a caller may keep (fieldValidation=Strict) or drop.
The schemas also carry Kubernetes' patch metadata (`x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy`), which drives the strategic merge patch.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import kubernetes_validate

SCHEMA_VERSION = "1.32.0"
DEFINITIONS_FILE = "_definitions.json"
_DEFS_PREFIX = "#/$defs/"
_GROUP_PREFERENCE = ("", "apps", "discovery.k8s.io", "coordination.k8s.io", "autoscaling")


class SchemaNotFound(LookupError):
    """No schema for this apiVersion/kind in the shipped set."""


def schema_directory(version: str = SCHEMA_VERSION, strict: bool = True) -> Path:
    """The directory of one version's schemas (raises SchemaNotFound if not shipped)."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    directory = base / (f"v{version}-local" + ("-strict" if strict else ""))
    if not directory.is_dir():
        raise SchemaNotFound(f"kubernetes-validate ships no schemas for {version}")
    return directory


def kind_file_name(api_version: str, kind: str) -> str:
    """`apps/v1`, `Deployment` → `deployment-apps-v1.json` (the group's first label only)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


def _plain(name) -> bool:
    """A kind or apiVersion that cannot walk out of the schema directory."""
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*(/[A-Za-z0-9]+)?", name) is not None


class SchemaSet:
    """The schemas of one Kubernetes version, loaded lazily and kept for the instance's life."""

    def __init__(self, version: str = SCHEMA_VERSION):
        self.directory = schema_directory(version)
        self._definitions: dict | None = None
        self._kinds: dict[tuple[str, str], dict] = {}

    @property
    def definitions_document(self) -> dict:
        """The whole `_definitions.json` (its `$id` is what kind schemas `$ref` into)."""
        if self._definitions is None:
            with open(self.directory / DEFINITIONS_FILE) as handle:
                self._definitions = json.load(handle)
        return self._definitions

    @property
    def definitions(self) -> dict:
        return self.definitions_document["$defs"]

    def kind_schema(self, api_version: str, kind: str) -> dict:
        """The top-level schema of a kind; raises SchemaNotFound."""
        key = (api_version, kind)
        if key not in self._kinds:
            if not _plain(kind) or not _plain(api_version):
                raise SchemaNotFound(f"no schema for kind {kind!r} in {api_version!r}")
            path = self.directory / kind_file_name(api_version, kind)
            if not path.is_file():
                raise SchemaNotFound(f"no schema for kind {kind!r} in {api_version!r}")
            with open(path) as handle:
                self._kinds[key] = json.load(handle)
        return self._kinds[key]

    def resolve(self, schema: dict | None) -> dict | None:
        """Follow `$ref` into the definitions (None stays None)."""
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            schema = self.definitions.get(ref[ref.index(_DEFS_PREFIX) + len(_DEFS_PREFIX):])
        return schema

    @functools.cached_property
    def kind_versions(self) -> dict[str, str]:
        """kind → apiVersion for every top-level kind (core group first, then apps, ...)."""
        found: dict[str, tuple[int, str]] = {}
        for definition in self.definitions.values():
            for gvk in definition.get("x-kubernetes-group-version-kind") or []:
                group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
                rank = _GROUP_PREFERENCE.index(group) if group in _GROUP_PREFERENCE else 99
                api_version = f"{group}/{version}" if group else version
                if kind not in found or (rank, api_version) < found[kind]:
                    found[kind] = (rank, api_version)
        return {kind: api_version for kind, (_, api_version) in found.items()}

    def schema_for_kind(self, kind: str) -> dict:
        """The top-level schema of a kind known by name only; raises SchemaNotFound."""
        api_version = self.kind_versions.get(kind)
        if api_version is None:
            raise SchemaNotFound(f"no schema for kind {kind!r}")
        return self.kind_schema(api_version, kind)


@functools.lru_cache(maxsize=4)
def shared_schema_set(version: str = SCHEMA_VERSION) -> SchemaSet:
    """One SchemaSet per version for callers without their own (the files never change)."""
    return SchemaSet(version)
