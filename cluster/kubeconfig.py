"""Kubeconfig files for the clusters pkube starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import yaml


def admin_kubeconfig(server: str, token: Optional[str] = None, ca_data: Optional[str] = None,
                     name: str = "pkube") -> dict:
    """A kubeconfig with one cluster, one user and one current context named ``name``."""
    cluster = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    user = {"token": token} if token else {}
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
