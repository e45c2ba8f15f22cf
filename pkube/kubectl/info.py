"""Read-only information: version, api-resources, cluster-info, explain (from the served OpenAPI v3)."""

from __future__ import annotations

from typing import Optional

from pkube.kubectl.errors import CliError
from pkube.kubectl.printers import align
from pkube.kubectl.session import ApiResource, Session

def api_resources_text(resources: list[ApiResource], wide: bool = False, namespaced: Optional[bool] = None) -> str:
    """kubectl api-resources: NAME SHORTNAMES APIVERSION NAMESPACED KIND (VERBS CATEGORIES with wide)."""
    rows = [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"] + (["VERBS", "CATEGORIES"] if wide else [])]
    for res in sorted(resources, key=lambda r: (r.group, r.plural)):
        if namespaced is not None and res.namespaced != namespaced:
            continue
        row = [res.plural, ",".join(res.short_names), res.api_version, str(res.namespaced).lower(), res.kind]
        if wide:
            row += [f"[{' '.join(res.verbs)}]", ",".join(res.categories)]
        rows.append(row)
    return align(rows)


def cluster_info_text(server: str) -> str:
    return (f"Kubernetes control plane is running at {server}\n\n"
            "To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n")


# ---------------------------------------------------------------- explain

def find_kind_schema(document: dict, res: ApiResource) -> Optional[tuple[str, dict]]:
    """(definition name, schema) of ``res``'s kind in an OpenAPI v3 document."""
    for name, schema in ((document.get("components") or {}).get("schemas") or {}).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (res.group, res.version, res.kind):
                return name, schema
    return None


def _resolve(schema: dict, schemas: dict) -> dict:
    """Follow ``$ref`` / single ``allOf`` to the schema they name (siblings kept)."""
    ref = schema.get("$ref") or ((schema.get("allOf") or [{}])[0]).get("$ref")
    if not ref:
        return schema
    target = schemas.get(ref.rsplit("/", 1)[-1], {})
    return {**target, **{k: v for k, v in schema.items() if k not in ("$ref", "allOf")}}


def type_name(schema: dict, schemas: Optional[dict] = None) -> str:
    """``<PodSpec>``, ``<[]Container>``, ``<map[string]string>``, ``<string>``... as kubectl prints:
    a reference names its schema, unless that schema is a plain primitive (Time is ``string``)."""
    ref = schema.get("$ref") or ((schema.get("allOf") or [{}])[0]).get("$ref")
    if ref:
        target = (schemas or {}).get(ref.rsplit("/", 1)[-1]) or {}
        if target.get("type") and target["type"] != "object":
            return target["type"]
        return ref.rsplit(".", 1)[-1]
    kind = schema.get("type", "Object")
    if kind == "array":
        return "[]" + type_name(schema.get("items") or {}, schemas)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + type_name(schema["additionalProperties"], schemas)
    return {"object": "Object"}.get(kind, kind)


def walk_field(schema: dict, schemas: dict, path: list[str]) -> tuple[dict, dict]:
    """(raw field schema, resolved schema) at ``path``; raises CliError for an unknown field."""
    raw, current = schema, _resolve(schema, schemas)
    for part in path:
        if current.get("type") == "array":
            current = _resolve(current.get("items") or {}, schemas)
        props = current.get("properties") or {}
        if part not in props:
            raise CliError(f"field \"{part}\" does not exist")
        raw = props[part]
        current = _resolve(raw, schemas)
    if current.get("type") == "array":
        current = _resolve(current.get("items") or {}, schemas)
    return raw, current


WRAP_WIDTH = 76  # kubectl explain wraps descriptions at 76 columns, then indents them by 4


def wrap(text: str, indent: int) -> list[str]:
    """Greedy word wrap of each line of ``text`` (kubectl's ``wrap 76 | indent N``); words are
    never broken, so long URLs stay whole."""
    out = []
    for paragraph in (text or "").split("\n"):
        line = None
        for word in paragraph.split(" "):  # runs of spaces are kept, as kubectl keeps them
            if line is None:
                line = word
            elif line and len(line) + 1 + len(word) > WRAP_WIDTH:
                out.append(" " * indent + line.rstrip(" "))
                line = word
            else:
                line = f"{line} {word}"
        out.append(" " * indent + (line or ""))
    return out


def _referenced(schema: dict, schemas: dict) -> Optional[dict]:
    """The named schema a field points to (through allOf/$ref, or its array items), or None."""
    if schema.get("type") == "array":
        return _referenced(schema.get("items") or {}, schemas)
    ref = schema.get("$ref") or ((schema.get("allOf") or [{}])[0]).get("$ref")
    return schemas.get(ref.rsplit("/", 1)[-1]) if ref else None


def explain_text(res: ApiResource, document: dict, path: list[str], recursive: bool = False) -> str:
    """kubectl explain's plaintext page (v1.32 layout) for ``res`` and a field path below it."""
    found = find_kind_schema(document, res)
    if not found:
        raise CliError(f"couldn't find resource for \"{res.api_version}, Kind={res.kind}\"")
    schemas = document["components"]["schemas"]
    raw, current = walk_field(found[1], schemas, path)
    lines = [f"GROUP:      {res.group}"] if res.group else []
    lines += [f"KIND:       {res.kind}", f"VERSION:    {res.version}", ""]
    if path:
        lines += [f"FIELD: {path[-1]} <{type_name(raw, schemas)}>", "", ""]
        target = _referenced(raw, schemas)
        descriptions = [raw.get("description"), (target or {}).get("description")]
    else:
        descriptions = [found[1].get("description")]
    lines.append("DESCRIPTION:")
    for text in filter(None, descriptions):
        lines += wrap(text, 4)
    lines.append("    ")
    props = current.get("properties") or {}
    if props:
        lines.append("FIELDS:")
        lines += _fields(props, schemas, current.get("required") or [], recursive, 2, set())
    lines.append("")
    return "\n".join(lines) + "\n"


def _fields(props: dict, schemas: dict, required: list[str], recursive: bool, indent: int, seen: set) -> list[str]:
    lines = []
    for name in sorted(props):
        schema = props[name]
        marker = " -required-" if name in required else ""
        lines.append(f"{' ' * indent}{name}\t<{type_name(schema, schemas)}>{marker}")
        if recursive:
            inner = _referenced(schema, schemas) or {}
            key = type_name(schema, schemas)
            if inner.get("properties") and key not in seen:
                lines += _fields(inner["properties"], schemas, inner.get("required") or [], True, indent + 2,
                                 seen | {key})
        else:
            lines += wrap(schema.get("description") or "<no description>", indent + 2)
            lines.append("")
    return lines


def fetch_openapi_v3(session: Session, res: ApiResource) -> dict:
    """The served OpenAPI v3 document of ``res``'s group-version."""
    root = session.get_json("/openapi/v3")
    key = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
    entry = (root.get("paths") or {}).get(key)
    if not entry:
        raise CliError(f"the server has no OpenAPI v3 document for {res.api_version}")
    url = entry.get("serverRelativeURL") or f"/openapi/v3/{key}"
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    return session.get_json(path, params)
