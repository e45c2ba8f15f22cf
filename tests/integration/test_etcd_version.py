"""The etcd pkube runs is 3.5 or newer, with etcdutl beside it (make setup installs it:
scripts/install-etcd.sh). etcd 3.4's reads copy the buffer of uncommitted writes, which made
its memory grow under the soak's load (docs/reliability.md)."""

from __future__ import annotations

import re
import shutil
import subprocess

from pkube.cluster.manifests import etcd_binary


def version_of(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"etcd Version: (\d+)\.(\d+)", out)
    assert found, f"{binary} --version said: {out!r}"
    return int(found.group(1)), int(found.group(2))


def test_pkube_runs_etcd_3_5_or_newer_with_etcdutl():
    assert version_of(etcd_binary()) >= (3, 5)
    assert shutil.which("etcdutl"), "etcdutl (snapshot status and restore since etcd 3.5) is not on PATH"
