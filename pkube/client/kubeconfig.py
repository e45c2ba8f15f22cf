"""Load a kubeconfig into a ``ClientConfig``, the way kubectl does.

Sources, first that applies: an explicit path (``--kubeconfig``), the
``$KUBECONFIG`` list (files merged: for each map key and each named cluster,
user or context, the first file that sets it wins; missing files are skipped),
then ``~/.kube/config``. File paths inside a kubeconfig are relative to that
file's directory. Credentials are read into memory at load time (PEM text),
so a ``ClientConfig`` is self-contained.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable, or does not name what was asked for."""


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to reach one apiserver.

    ``ca``, ``cert`` and ``key`` are PEM text (None when not set); ``insecure``
    skips server certificate verification; ``namespace`` is the context's
    default namespace.
    """

    server: str
    ca: Optional[str] = None
    token: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    namespace: str = "default"
    insecure: bool = False
    user_agent: str = "pkube/0.1"  # components name themselves (kube-scheduler/...): managedFields


def load_kubeconfig(path: Optional[str] = None, context: Optional[str] = None) -> ClientConfig:
    """The ClientConfig of ``context`` (default: current-context) from the usual sources.

    Raises KubeconfigError when no file is found or the context, cluster or
    user it names is missing.
    """
    files = kubeconfig_files(path)
    if not files:
        raise KubeconfigError("no kubeconfig found (tried --kubeconfig, $KUBECONFIG, ~/.kube/config)")
    merged = merge_kubeconfigs([(f, _read_yaml(f)) for f in files])
    return config_from_merged(merged, context)


def kubeconfig_files(path: Optional[str] = None) -> list[Path]:
    """The existing kubeconfig files to merge, in priority order."""
    if path:
        if not Path(path).is_file():
            raise KubeconfigError(f"kubeconfig {path}: no such file")
        return [Path(path)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p and Path(p).is_file()]
    default = Path.home() / ".kube" / "config"
    return [default] if default.is_file() else []


def merge_kubeconfigs(docs: list[tuple[Path, dict]]) -> dict:
    """Merge parsed kubeconfigs; the first to set a value wins.

    Each named entry remembers the directory of its file (``_dir``) to resolve
    relative paths.
    """
    merged: dict = {"clusters": {}, "users": {}, "contexts": {}}
    for path, doc in docs:
        if not merged.get("current-context"):
            merged["current-context"] = doc.get("current-context") or None
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in doc.get(section) or []:
                name = entry.get("name")
                if name and name not in merged[section]:
                    merged[section][name] = dict(entry.get(inner) or {}, _dir=str(path.parent))
    return merged


def config_from_merged(merged: dict, context: Optional[str] = None) -> ClientConfig:
    """Resolve one context of a merged kubeconfig into a ClientConfig."""
    name = context or merged.get("current-context")
    if not name:
        raise KubeconfigError("kubeconfig has no current-context; pass a context")
    ctx = _named(merged, "contexts", name)
    cluster = _named(merged, "clusters", ctx.get("cluster"))
    user = _named(merged, "users", ctx["user"]) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")
    return ClientConfig(
        server=server.rstrip("/"),
        ca=_pem(cluster, "certificate-authority"),
        token=_token(user),
        cert=_pem(user, "client-certificate"),
        key=_pem(user, "client-key"),
        namespace=ctx.get("namespace") or "default",
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def _named(merged: dict, section: str, name: Optional[str]) -> dict:
    if not name or name not in merged[section]:
        raise KubeconfigError(f"kubeconfig: {section[:-1]} {name!r} not found")
    return merged[section][name]


def _pem(entry: dict, field: str) -> Optional[str]:
    """The PEM text of ``field-data`` (base64) or of the file ``field``; None if neither."""
    data = entry.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode(data).decode()
        except ValueError as err:
            raise KubeconfigError(f"kubeconfig: {field}-data is not base64: {err}") from None
    path = entry.get(field)
    return _read_text(_resolve(entry, path)) if path else None


def _token(user: dict) -> Optional[str]:
    if user.get("token"):
        return user["token"]
    if user.get("tokenFile"):
        return _read_text(_resolve(user, user["tokenFile"])).strip()
    return None


def _resolve(entry: dict, path: str) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path(entry.get("_dir", ".")) / p


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise KubeconfigError(f"kubeconfig: read {path}: {err.strerror}") from None


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(_read_text(path)) or {}
    except yaml.YAMLError as err:
        raise KubeconfigError(f"kubeconfig {path}: not YAML: {err}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a mapping")
    return doc
