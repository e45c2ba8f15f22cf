"""Output of pkubectl: tables as kubectl aligns them, and -o yaml|json|name|jsonpath|custom-columns.

Tables come from the server (a meta.k8s.io ``Table``); this module only
selects columns (priority 1 for ``-o wide``), adds NAMESPACE (``-A``) and
LABELS (``--show-labels``), sorts, and aligns like Go's tabwriter with
kubectl's settings (minimum cell width 6, padding 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from pkube.kubectl.errors import CliError
from pkube.api.jsonpath import JSONPathError, format_value, parse_template, render, values_at

MIN_WIDTH = 6
PADDING = 3
FORMATS = ("wide", "yaml", "json", "name", "jsonpath", "custom-columns", "jsonpath-as-json")


@dataclass(frozen=True)
class OutputFormat:
    """A parsed ``-o`` value: ``kind`` is "" (default table) or one of FORMATS."""

    kind: str = ""
    argument: str = ""

    @property
    def is_table(self) -> bool:
        return self.kind in ("", "wide")

    @property
    def needs_objects(self) -> bool:
        return not self.is_table


def parse_output(value: Optional[str]) -> OutputFormat:
    """``-o`` as given; raises CliError for an unknown format."""
    if not value:
        return OutputFormat()
    kind, _, argument = value.partition("=")
    if kind not in FORMATS:
        raise CliError(f"unable to match a printer suitable for the output format \"{value}\", "
                       f"allowed formats are: {','.join(sorted(FORMATS))}")
    if kind in ("jsonpath", "jsonpath-as-json", "custom-columns") and not argument:
        raise CliError(f"{kind} format specified but no {kind} template given")
    if kind.startswith("jsonpath"):
        try:
            parse_template(argument)
        except JSONPathError as err:
            raise CliError(f"error parsing jsonpath {argument}, {err}") from None
    return OutputFormat(kind, argument)


def align(rows: list[list[str]], widths: Optional[list[int]] = None) -> str:
    """Rows as tabwriter(minwidth=6, padding=3) prints them; the last column is not padded.

    ``widths``, when given, holds column widths from earlier output (``get -w`` keeps the
    first table's alignment, like kubectl); it is widened in place as needed.
    """
    if not rows:
        return ""
    count = max(len(r) for r in rows)
    widths = widths if widths is not None else []
    for i in range(count - 1):
        needed = max(MIN_WIDTH, max((len(r[i]) for r in rows if i < len(r)), default=0) + PADDING)
        if i < len(widths):
            widths[i] = max(widths[i], needed)
        else:
            widths.append(needed)
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("".join(cells).rstrip() if len(row) < count else "".join(cells))
    return "\n".join(lines) + "\n"


def cell_text(value: Any) -> str:
    """One table cell as kubectl prints it (None is empty, lists joined)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(cell_text(v) for v in value)
    return str(value)


@dataclass
class TableOptions:
    """How to print a Table: wide columns, a NAMESPACE column, a LABELS column, a name prefix."""

    wide: bool = False
    with_namespace: bool = False
    show_labels: bool = False
    name_prefix: str = ""
    no_headers: bool = False


def table_rows(table: dict, options: TableOptions, header: bool = True) -> list[list[str]]:
    """The rows (header first unless ``header`` is False) of a server Table."""
    columns = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(columns) if options.wide or not c.get("priority")]
    rows = []
    if header and not options.no_headers:
        names = [columns[i]["name"].upper() for i in keep]
        rows.append((["NAMESPACE"] if options.with_namespace else []) + names
                    + (["LABELS"] if options.show_labels else []))
    name_index = next((i for i, c in enumerate(columns) if c.get("format") == "name"), None)
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        texts = [cell_text(cells[i]) if i < len(cells) else "" for i in keep]
        if options.name_prefix and name_index in keep:
            position = keep.index(name_index)
            texts[position] = options.name_prefix + texts[position]
        meta = (row.get("object") or {}).get("metadata") or {}
        if options.with_namespace:
            texts.insert(0, meta.get("namespace", ""))
        if options.show_labels:
            texts.append(format_labels(meta.get("labels")))
        rows.append(texts)
    return rows


def format_labels(labels: Optional[dict]) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def sort_table(table: dict, sort_by: str) -> dict:
    """The table with rows ordered by a JSONPath over each row's object (needs includeObject=Object)."""
    rows = list(table.get("rows") or [])
    rows.sort(key=lambda row: sort_key(row.get("object") or {}, sort_by))
    return dict(table, rows=rows)


def check_sort_by(sort_by: str) -> None:
    """Raise CliError when ``--sort-by`` is not a JSONPath we can evaluate."""
    sort_key({}, sort_by)


def sort_key(obj: dict, sort_by: str):
    """kubectl --sort-by: numbers before strings, missing values first."""
    try:
        values = values_at(sort_by, obj)
    except JSONPathError as err:
        raise CliError(f"couldn't parse --sort-by {sort_by!r}: {err}") from None
    if not values:
        return (0, 0, "")
    value = values[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, format_value(value))


def qualified_kind(obj: dict) -> str:
    """``deployment.apps`` / ``pod``: the prefix kubectl prints before a name."""
    group = (obj.get("apiVersion") or "").rpartition("/")[0]
    kind = (obj.get("kind") or "").lower()
    return f"{kind}.{group}" if group else kind


def name_line(obj: dict) -> str:
    return f"{qualified_kind(obj)}/{(obj.get('metadata') or {}).get('name', '')}"


def as_list(objects: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}}


def dump_yaml(obj: Any) -> str:
    """YAML as kubectl prints it (Go's yaml): sorted keys, double quotes where quoting is
    needed, ``|`` blocks for multi-line strings, no line folding."""
    import yaml  # deferred: keep `pkubectl version --client` fast

    return yaml.dump(obj, Dumper=_kubectl_dumper(yaml), default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)


GO_YAML_EXTRA_BOOLS = ("y", "Y", "n", "N")  # YAML 1.1 booleans Go's yaml knows and PyYAML does not
STR_TAG = "tag:yaml.org,2002:str"


def _kubectl_dumper(yaml):
    """A Dumper quoting like go-yaml v2: strings that would read back as another type get
    double quotes, other strings are plain when they can be (single quotes otherwise),
    multi-line strings are ``|`` blocks."""

    class KubectlDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper, value: str):
        if "\n" in value and value.strip("\n"):
            style = "|"
        elif value in GO_YAML_EXTRA_BOOLS or dumper.resolve(yaml.ScalarNode, value, (True, False)) != STR_TAG:
            style = '"'
        else:
            style = None
        return dumper.represent_scalar(STR_TAG, value, style=style)

    KubectlDumper.add_representer(str, represent_str)
    return KubectlDumper


def dump_json(obj: Any) -> str:
    """JSON as kubectl prints it: 4-space indent, keys sorted."""
    return json.dumps(obj, indent=4, ensure_ascii=False, sort_keys=True) + "\n"


def print_objects(objects: list[dict], fmt: OutputFormat, single: bool, show_managed_fields: bool = False) -> str:
    """Objects in a non-table format; ``single`` prints one object rather than a List.
    -o yaml|json leave out metadata.managedFields unless asked, as kubectl does."""
    if fmt.kind in ("yaml", "json") and not show_managed_fields:
        objects = [omit_managed_fields(o) for o in objects]
    document = objects[0] if single and len(objects) == 1 else as_list(objects)
    if fmt.kind == "yaml":
        return dump_yaml(document)
    if fmt.kind == "json":
        return dump_json(document)
    if fmt.kind == "name":
        return "".join(name_line(o) + "\n" for o in objects)
    if fmt.kind in ("jsonpath", "jsonpath-as-json"):
        return jsonpath_output(fmt.argument, document)
    return custom_columns(fmt.argument, objects)


def omit_managed_fields(obj: dict) -> dict:
    """``obj`` without metadata.managedFields (a shallow copy when it has them)."""
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


def jsonpath_output(template: str, document: Any) -> str:
    try:
        return render(template, document)
    except JSONPathError as err:
        raise CliError(f"error parsing jsonpath {template}, {err}") from None


def custom_columns(spec: str, objects: Iterable[dict], no_headers: bool = False) -> str:
    """``NAME:.metadata.name,IMAGE:.spec.containers[*].image`` as an aligned table."""
    columns = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path:
            raise CliError(f"unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>")
        columns.append((header, path))
    rows = [] if no_headers else [[h for h, _ in columns]]
    for obj in objects:
        rows.append([_column_value(obj, path) for _, path in columns])
    return align(rows)


def _column_value(obj: dict, path: str) -> str:
    try:
        values = values_at(path, obj)
    except JSONPathError as err:
        raise CliError(f"error parsing custom-columns path {path}: {err}") from None
    return ",".join(format_value(v) for v in values) if values else "<none>"
