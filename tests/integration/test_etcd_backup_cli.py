"""`pkube etcd snapshot` on bad input: one line on stderr and exit 1 for a missing file, a file
that is no snapshot, a snapshot whose bytes changed (the real etcdctl's hash check), a save with
no cluster running; a good snapshot (taken of the test's real etcd) restores into a new data
directory that etcd then starts from."""

from __future__ import annotations

import subprocess
import sys

from pkube.cluster.etcd import EtcdProcess
from pkube.cluster.etcdbackup import etcdctl
from tests.integration.processes import REPO


def pkube(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pkube.cluster", "etcd", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def one_line_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip()


def snapshot_of(etcd, path):
    etcdctl("--endpoints", etcd.endpoint, "put", "/registry/configmaps/default/backed-up", "{}")
    etcdctl("--endpoints", etcd.endpoint, "snapshot", "save", str(path))
    return path


def test_a_missing_snapshot_file(tmp_path):
    for verb in ("status", "restore"):
        assert one_line_failure(pkube("snapshot", verb, str(tmp_path / "nope.db"), "--data-dir", str(tmp_path))
                                if verb == "restore" else pkube("snapshot", verb, str(tmp_path / "nope.db"))) \
            == f"pkube: no snapshot file at {tmp_path / 'nope.db'}"


def test_a_file_that_is_no_snapshot(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database\n" * 1000)
    assert one_line_failure(pkube("snapshot", "restore", str(bad), "--data-dir", str(tmp_path / "c"))) \
        == f"pkube: {bad} is not a usable etcd snapshot: invalid database"
    assert not (tmp_path / "c" / "etcd").exists()


def test_a_snapshot_whose_bytes_changed_fails_the_hash_check(etcd, tmp_path):
    good = snapshot_of(etcd, tmp_path / "good.db")
    data = bytearray(good.read_bytes())
    data[-40] ^= 0xFF     # inside the trailing hash etcdctl checks
    bad = tmp_path / "flipped.db"
    bad.write_bytes(bytes(data))
    target = tmp_path / "c"
    (target / "etcd").mkdir(parents=True)
    (target / "etcd" / "mine").write_text("untouched")
    message = one_line_failure(pkube("snapshot", "restore", str(bad), "--data-dir", str(target)))
    assert message == f"pkube: cannot restore {bad}: its checksum does not match its contents (a damaged file)"
    assert (target / "etcd" / "mine").read_text() == "untouched"
    assert not (target / "etcd.restoring").exists()


def test_save_needs_a_running_cluster(tmp_path):
    assert one_line_failure(pkube("snapshot", "save", str(tmp_path / "s.db"), "--data-dir", str(tmp_path))) \
        == f"pkube: no cluster is running in {tmp_path}: start it with pkube up -d --data-dir {tmp_path}"
    assert one_line_failure(pkube("defrag", "--data-dir", str(tmp_path))).startswith("pkube: no cluster is running")


def test_a_restored_data_dir_starts_etcd_with_the_snapshot_keys(etcd, tmp_path):
    good = snapshot_of(etcd, tmp_path / "good.db")
    done = pkube("snapshot", "restore", str(good), "--data-dir", str(tmp_path / "new"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"snapshot {good} restored into {tmp_path / 'new' / 'etcd'}: revision ")
    client, peer = (int(p) for p in (tmp_path / "new" / "etcd.ports").read_text().split())
    restored = EtcdProcess(tmp_path / "new" / "etcd", client_port=client, peer_port=peer).start()
    try:
        assert etcdctl("--endpoints", restored.endpoint, "get", "--print-value-only",
                       "/registry/configmaps/default/backed-up").strip() == "{}"
    finally:
        restored.stop()
