"""Kubeconfig files for the clusters pkube starts."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Optional

import yaml


def admin_kubeconfig(server: str, token: Optional[str] = None, ca_data: Optional[str] = None,
                     name: str = "pkube", client_cert: Optional[bytes] = None,
                     client_key: Optional[bytes] = None) -> dict:
    """A kubeconfig with one cluster, one user and one current context named ``name``.
    ``ca_data`` is base64 already; ``client_cert``/``client_key`` are PEM (embedded, so the
    file is self-contained and can be merged into another)."""
    cluster = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    user = {"token": token} if token else {}
    if client_cert and client_key:
        user["client-certificate-data"] = base64.b64encode(client_cert).decode()
        user["client-key-data"] = base64.b64encode(client_key).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }


def write_private(path: Path, config: dict) -> None:
    """Write ``config`` as YAML readable by its owner only, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    os.replace(tmp, path)


def user_kubeconfig_path() -> Path:
    """Where kubectl looks by default: the first entry of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def merge_named(entries: list, new: dict) -> list:
    """``entries`` with the one named like ``new`` replaced (or ``new`` appended)."""
    kept = [e for e in entries or [] if e.get("name") != new["name"]]
    return kept + [new]


def merge_kubeconfig(existing: Optional[dict], ours: dict) -> dict:
    """``existing`` with our cluster, user and context added (same names replaced)
    and our context made current. Other entries are kept as they were."""
    merged = dict(existing or {"apiVersion": "v1", "kind": "Config", "preferences": {}})
    for section in ("clusters", "users", "contexts"):
        for entry in ours[section]:
            merged[section] = merge_named(merged.get(section) or [], entry)
    merged["current-context"] = ours["current-context"]
    return merged


def merge_into_user_config(ours: dict, path: Optional[Path] = None) -> Optional[Path]:
    """Merge ``ours`` into the user's kubeconfig, backing the old file up first.

    Returns the backup's path, or None when there was no file. Raises
    ValueError when the existing file is not a kubeconfig (it is left as is)."""
    path = path or user_kubeconfig_path()
    existing, backup = None, None
    if path.exists():
        text = path.read_text()
        existing = yaml.safe_load(text) if text.strip() else None
        if existing is not None and not isinstance(existing, dict):
            raise ValueError(f"{path} is not a kubeconfig; left unchanged")
        backup = path.with_name(path.name + ".pkube-backup")
        backup.write_text(text)
        os.chmod(backup, 0o600)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, merge_kubeconfig(existing, ours))
    return backup
