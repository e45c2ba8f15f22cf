"""`pkube etcd snapshot save|restore|status` and `pkube etcd defrag`: etcd backed up and restored
the way kubeadm users are told to (the real etcdctl's ``snapshot save`` and ``snapshot
restore``), and a cluster brought back under etcd's space quota (compact, defragment, disarm).

A snapshot holds etcd only. Secrets are encrypted at rest with the key in DIR/apiserver, and
certificates live in DIR/pki: a snapshot restored into another data directory serves its
Secrets only once that directory holds the same key (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pkube.cluster.secrets import etcd_endpoint
from pkube.cluster.up import ClusterConfig, ClusterError, etcd_ports_for, running_pid

ETCDCTL_TIMEOUT = 300
MEMBER_NAME = "pkube"   # pkube/cluster/etcd.py and pkube/cluster/templates/etcd.yaml name the one member so


@dataclass(frozen=True)
class SnapshotStatus:
    """What `etcdutl snapshot status` says of a snapshot file."""

    revision: int
    keys: int
    size: int


def etcdctl(*args: str, timeout: float = ETCDCTL_TIMEOUT, tool: str = "etcdctl") -> str:
    """Run the real etcdctl (API v3), or `tool`; its stdout. Raises ClusterError with the
    tool's last line when it fails or is missing."""
    binary = shutil.which(tool)
    if binary is None:
        raise ClusterError(f"{tool} not found: install etcd 3.5 (make setup)")
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, "ETCDCTL_API": "3"})
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{tool} {args[0]} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise ClusterError(_last_line(done.stderr or done.stdout) or f"{tool} exited with {done.returncode}")
    return done.stdout


def etcdutl(*args: str) -> str:
    """Run an offline command on a snapshot file (status, restore): etcdutl's since etcd 3.5
    (etcdctl's are deprecated there and gone in 3.6), etcdctl's with an older etcd."""
    return etcdctl(*args, tool="etcdutl" if shutil.which("etcdutl") else "etcdctl")


def _last_line(text: str) -> str:
    """etcdctl's error: its last non-empty line, without the 'Error: ' prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("Error: ") if lines else ""


def running_endpoint(data_dir: Path) -> str:
    """The etcd client URL of the cluster running in ``data_dir``; ClusterError when none runs."""
    endpoint = etcd_endpoint(data_dir)
    if running_pid(ClusterConfig(data_dir=data_dir)) is None or endpoint is None:
        raise ClusterError(f"no cluster is running in {data_dir}: start it with pkube up -d --data-dir {data_dir}")
    return endpoint


def status(snapshot: Path) -> SnapshotStatus:
    """Check ``snapshot`` (its hash included); ClusterError when it is missing or unusable."""
    if not snapshot.is_file():
        raise ClusterError(f"no snapshot file at {snapshot}")
    try:
        doc = json.loads(etcdutl("snapshot", "status", str(snapshot), "-w", "json"))
        return SnapshotStatus(int(doc["revision"]), int(doc["totalKey"]), int(doc["totalSize"]))
    except (ClusterError, ValueError, KeyError, TypeError) as err:
        raise ClusterError(f"{snapshot} is not a usable etcd snapshot: {err}") from None


def save(snapshot: Path, data_dir: Path) -> SnapshotStatus:
    """`etcdctl snapshot save` of the running cluster's etcd into ``snapshot`` (etcdctl writes
    FILE.part and renames it, so a failed save leaves no partial FILE)."""
    endpoint = running_endpoint(data_dir)
    if not snapshot.parent.is_dir():
        raise ClusterError(f"cannot write {snapshot}: no directory {snapshot.parent}")
    etcdctl("--endpoints", endpoint, "snapshot", "save", str(snapshot))
    return status(snapshot)


def restore(snapshot: Path, data_dir: Path) -> tuple[SnapshotStatus, Path | None]:
    """Make DIR/etcd from ``snapshot`` for a cluster that is not running (`pkube up --data-dir
    DIR` then serves what the snapshot holds). An existing DIR/etcd is kept aside, renamed
    etcd.before-restore-TIME, and returned; nothing changes when the snapshot is unusable."""
    config = ClusterConfig(data_dir=data_dir)
    pid = running_pid(config)
    if pid is not None:
        raise ClusterError(f"a cluster is running in {data_dir} (pid {pid}): stop it with "
                           f"pkube down --data-dir {data_dir} before restoring")
    found = status(snapshot)
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / "etcd.restoring"
    shutil.rmtree(staging, ignore_errors=True)
    peer = f"http://127.0.0.1:{etcd_ports_for(config)[1]}"
    try:
        etcdutl("snapshot", "restore", str(snapshot), "--data-dir", str(staging), "--name", MEMBER_NAME,
                "--initial-cluster", f"{MEMBER_NAME}={peer}", "--initial-advertise-peer-urls", peer)
    except ClusterError as err:
        shutil.rmtree(staging, ignore_errors=True)
        why = "its checksum does not match its contents (a damaged file)" if "sha256" in str(err) else err
        raise ClusterError(f"cannot restore {snapshot}: {why}") from None
    os.chmod(staging, 0o700)
    return found, _swap_in(staging, data_dir / "etcd")


def _swap_in(staging: Path, target: Path) -> Path | None:
    """Rename ``staging`` to ``target``, keeping an existing ``target`` aside (returned)."""
    kept = None
    if target.exists():
        kept = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}")
        target.rename(kept)
    staging.rename(target)
    return kept


def defrag(data_dir: Path) -> tuple[int, int, int]:
    """Bring the running cluster's etcd back under its space quota: compact to the current
    revision, defragment, disarm the NOSPACE alarm. The database size (bytes) before and after,
    and the revision compacted to."""
    return reclaim(running_endpoint(data_dir))


def reclaim(endpoint: str) -> tuple[int, int, int]:
    """``defrag`` of the etcd at ``endpoint``."""
    revision, before = _endpoint_status(endpoint)
    try:
        etcdctl("--endpoints", endpoint, "compact", str(revision))
    except ClusterError as err:
        if "compacted" not in str(err):   # compacted there already: nothing written since
            raise
    etcdctl("--endpoints", endpoint, "defrag")
    etcdctl("--endpoints", endpoint, "alarm", "disarm")
    return before, _endpoint_status(endpoint)[1], revision


def _endpoint_status(endpoint: str) -> tuple[int, int]:
    """(revision, database size in bytes) from `etcdctl endpoint status`."""
    try:
        doc = json.loads(etcdctl("--endpoints", endpoint, "endpoint", "status", "-w", "json"))[0]["Status"]
        return int(doc["header"]["revision"]), int(doc["dbSize"])
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise ClusterError(f"etcdctl endpoint status: unexpected answer ({err})") from None
