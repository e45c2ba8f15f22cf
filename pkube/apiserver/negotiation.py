"""Content negotiation: what representation a GET asked for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json``
to get server-side printed Tables; everything else gets plain JSON objects
(falling back to JSON is always legal for clients that also accept it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pkube.api.kinds import ResourceInfo
from pkube.apiserver import errors, tables

TABLE_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True)
class TableRequest:
    """A request for ``meta.k8s.io/{version}`` Tables with rows carrying ``include_object``."""

    version: str
    include_object: str

    @property
    def api_version(self) -> str:
        return f"meta.k8s.io/{self.version}"


def table_request(accept: str, query) -> Optional[TableRequest]:
    """The Table the Accept header asks for, or None for plain JSON."""
    for media_range in accept.split(","):
        parts = [p.strip() for p in media_range.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" \
                and params.get("v") in TABLE_VERSIONS and parts[0] in ("application/json", "*/*"):
            include = query.get("includeObject") or "Metadata"
            if include not in tables.INCLUDE_OBJECT_CHOICES:
                raise errors.bad_request(f'includeObject: Unsupported value: "{include}": supported '
                                         f'values: "Metadata", "None", "Object"')
            return TableRequest(params["v"], include)
    return None


def table_of(info: ResourceInfo, objects: list[dict], request: TableRequest,
             list_meta: Optional[dict] = None) -> dict:
    """A Table of ``objects`` with kubectl's columns for ``info`` (a CRD's printer
    columns for a custom resource)."""
    if info.custom is not None:
        table = tables.custom_table(info.custom.columns, objects, include_object=request.include_object,
                                    api_version=request.api_version)
    else:
        table = tables.to_table(info.plural, objects, include_object=request.include_object,
                                api_version=request.api_version)
    if list_meta:
        table["metadata"] = list_meta
    return table


# What a resource route Produces (kube-apiserver's installer.go: the serializers' media types,
# their stream variants), plus the wildcards go-restful's matchesAccept takes.
PRODUCED = frozenset(("*/*", "application/*", "application/json", "application/yaml",
                      "application/vnd.kubernetes.protobuf",
                      "application/vnd.kubernetes.protobuf;stream=watch"))


def acceptable(accept: str) -> bool:
    """True when the Accept header ``accept`` names a type resources are served in (parameters
    such as ``as=Table`` or ``q=`` aside); an empty header accepts anything."""
    if not accept or "json" in accept or "*/*" in accept:
        return True
    return any(part.split(";", 1)[0].strip().lower() in PRODUCED for part in accept.split(","))
