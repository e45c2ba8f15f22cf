"""``pkubectl top pod|node``: resource usage from metrics.k8s.io/v1beta1 (PodMetrics,
NodeMetrics), printed as kubectl prints it.

kubectl's table is Go's tabwriter (padding 3) with every cell, the last too, ended by a
tab: each column is its widest cell + 3 wide and lines keep their trailing spaces. CPU is
shown in millicores (rounded up), memory in MiB (rounded down); a pod's containers are
summed before rounding.
"""

from __future__ import annotations

import decimal
import math
from typing import Optional

from pkube.kubectl.errors import CliError

METRICS_GROUP = "metrics.k8s.io"
METRICS_VERSION = "v1beta1"
MIN_WIDTH, PADDING = 0, 3
_SMALL_SUFFIXES = {"n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6")}


def quantity_value(text) -> decimal.Decimal:
    """A quantity's exact value, with the ``n`` and ``u`` suffixes metrics use."""
    from pkube.api.quantity import QuantityError, parse_quantity

    text = str(text)
    try:
        if text[-1:] in _SMALL_SUFFIXES:
            return decimal.Decimal(text[:-1]) * _SMALL_SUFFIXES[text[-1]]
        return parse_quantity(text)
    except (QuantityError, decimal.InvalidOperation):
        raise CliError(f"invalid quantity in metrics: {text!r}") from None


def millicores(total: decimal.Decimal) -> int:
    return math.ceil(total * 1000)


def mebibytes(total: decimal.Decimal) -> int:
    return math.ceil(total) // (1024 * 1024)


def tab_table(rows: list[list[str]]) -> str:
    """Rows as kubectl's top tabwriter aligns them (trailing spaces kept)."""
    if not rows:
        return ""
    widths = [max(MIN_WIDTH, max(len(row[i]) for row in rows if i < len(row)) + PADDING)
              for i in range(max(len(row) for row in rows))]
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + "\n" for row in rows)


def _usage(block: dict, resource: str) -> decimal.Decimal:
    return quantity_value(((block.get("usage") or {}).get(resource)) or "0")


def pod_rows(metrics: list[dict], *, namespaces: bool = False, containers: bool = False,
             headers: bool = True, sort_by: Optional[str] = None) -> list[list[str]]:
    """The rows of ``top pod`` from PodMetrics items: one per pod (its containers summed), or
    one per container with ``containers``; by namespace and name, or by usage (descending)."""
    entries = []
    for item in metrics:
        meta = item.get("metadata") or {}
        blocks = item.get("containers") or []
        parts = [(c.get("name", ""), _usage(c, "cpu"), _usage(c, "memory")) for c in blocks]
        if containers:
            entries += [(meta.get("namespace", ""), meta.get("name", ""), *part) for part in parts]
        else:
            entries.append((meta.get("namespace", ""), meta.get("name", ""), "",
                            sum((p[1] for p in parts), decimal.Decimal(0)),
                            sum((p[2] for p in parts), decimal.Decimal(0))))
    entries.sort(key=_sorter(sort_by, cpu_index=3, memory_index=4, name_key=lambda e: (e[0], e[1], e[2])))
    head = (["NAMESPACE"] if namespaces else []) + (["POD"] if containers else []) + \
        ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = [head] if headers else []
    for namespace, pod, container, cpu, memory in entries:
        rows.append(([namespace] if namespaces else []) + ([pod, container] if containers else [pod]) +
                    [f"{millicores(cpu)}m", f"{mebibytes(memory)}Mi"])
    return rows


def node_rows(metrics: list[dict], nodes: list[dict], *, headers: bool = True, sort_by: Optional[str] = None,
              capacity: bool = False) -> list[list[str]]:
    """The rows of ``top node``: usage and its share of each node's allocatable (capacity with
    ``capacity``); nodes without metrics get ``<unknown>`` everywhere, after the others."""
    by_name = {(n.get("metadata") or {}).get("name"): n for n in nodes}
    entries = []
    for item in metrics:
        name = (item.get("metadata") or {}).get("name", "")
        entries.append((name, _usage(item, "cpu"), _usage(item, "memory")))
    entries.sort(key=_sorter(sort_by, cpu_index=1, memory_index=2, name_key=lambda e: e[0]))
    rows = [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]] if headers else []
    for name, cpu, memory in entries:
        available = ((by_name.get(name) or {}).get("status") or {}).get("capacity" if capacity else "allocatable") or {}
        rows.append([name, f"{millicores(cpu)}m", _percent(millicores(cpu), available.get("cpu"), millicores),
                     f"{mebibytes(memory)}Mi", _percent(math.ceil(memory), available.get("memory"), math.ceil)])
    seen = {e[0] for e in entries}
    rows += [[name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"]
             for name in sorted(n for n in by_name if n not in seen)]
    return rows


def _percent(used: int, available, scale) -> str:
    if available is None:
        return "<unknown>"
    total = scale(quantity_value(available))
    return f"{used * 100 // total}%" if total else "<unknown>"


def _sorter(sort_by: Optional[str], cpu_index: int, memory_index: int, name_key):
    if sort_by in (None, ""):
        return name_key
    if sort_by == "cpu":
        return lambda e: (-e[cpu_index], name_key(e))
    if sort_by == "memory":
        return lambda e: (-e[memory_index], name_key(e))
    raise CliError("--sort-by accepts only cpu or memory")


# ---------------------------------------------------------------- talking to the server

def metrics_served(session) -> bool:
    """The server lists the metrics.k8s.io group with version v1beta1 (kubectl's check)."""
    for group in session.get_json("/apis").get("groups") or []:
        if group.get("name") == METRICS_GROUP:
            return any(v.get("version") == METRICS_VERSION for v in group.get("versions") or [])
    return False


def _metrics_path(plural: str, namespace: Optional[str] = None, name: Optional[str] = None) -> str:
    path = f"/apis/{METRICS_GROUP}/{METRICS_VERSION}"
    if namespace:
        path += f"/namespaces/{namespace}"
    return path + f"/{plural}" + (f"/{name}" if name else "")


def top_pods(session, args, out, err) -> int:
    """``top pod [NAME] [-A] [-l SEL] [--containers] [--no-headers] [--sort-by cpu|memory]``."""
    from pkube.client.resources import PODS

    if not metrics_served(session):
        raise CliError("Metrics API not available")
    namespace = None if args.all_namespaces else session.namespace
    if args.name:
        items = [session.get_json(_metrics_path("pods", namespace, args.name))]
    else:
        params = {"labelSelector": args.selector} if args.selector else None
        items = session.get_json(_metrics_path("pods", namespace), params).get("items") or []
    if not items:
        pods = session.client.list(PODS, namespace, label_selector=args.selector, limit=1).get("items") or []
        if pods:
            raise CliError("metrics not available yet")
        err.write("No resources found\n" if args.all_namespaces else f"No resources found in {namespace} namespace.\n")
        return 0
    out.write(tab_table(pod_rows(items, namespaces=args.all_namespaces, containers=args.containers,
                                 headers=not args.no_headers, sort_by=args.sort_by)))
    return 0


def top_nodes(session, args, out, err) -> int:
    """``top node [NAME] [-l SEL] [--no-headers] [--sort-by cpu|memory] [--show-capacity]``."""
    from pkube.client.resources import NODES

    if not metrics_served(session):
        raise CliError("Metrics API not available")
    if args.name:
        items = [session.get_json(_metrics_path("nodes", name=args.name))]
        nodes = [session.client.get(NODES, args.name)]
    else:
        params = {"labelSelector": args.selector} if args.selector else None
        items = session.get_json(_metrics_path("nodes"), params).get("items") or []
        nodes = session.client.list_all(NODES, label_selector=args.selector).get("items") or []
    if not items:
        raise CliError("metrics not available yet")
    out.write(tab_table(node_rows(items, nodes, headers=not args.no_headers, sort_by=args.sort_by,
                                  capacity=args.show_capacity)))
    return 0
