"""Backup and restore of a `pkube up` cluster's etcd, as kubeadm users do it: `pkube etcd snapshot
save` while it runs, objects changed after, `pkube etcd snapshot restore` while it is down, and
the cluster started again serves exactly what existed at save time (a Secret, encrypted at rest,
included). Restoring into a running cluster is refused with one line; `pkube etcd defrag` on
the running cluster leaves it serving."""

from __future__ import annotations

from tests.e2e.conftest import pkube, start_cluster
from pkube.cluster.etcd import free_port

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"name": name}}


def test_a_restored_snapshot_serves_what_existed_at_save_time(tmp_path):
    data_dir, port, snapshot = tmp_path / "c", free_port(), tmp_path / "backup.db"
    cluster = start_cluster(data_dir, port)
    try:
        with cluster.http() as http:
            for name in ("kept", "deleted-after-save"):
                assert http.post(CONFIGMAPS, json=configmap(name)).status_code == 201
            assert http.post("/api/v1/namespaces/default/secrets", json={
                "metadata": {"name": "kept-secret"}, "stringData": {"k": "v"}}).status_code == 201
        saved = pkube("etcd", "snapshot", "save", str(snapshot), "--data-dir", str(data_dir))
        assert saved.returncode == 0, saved.stderr
        assert f"snapshot {snapshot} saved: revision" in saved.stdout
        with cluster.http() as http:
            assert http.delete(f"{CONFIGMAPS}/deleted-after-save").status_code == 200
            assert http.post(CONFIGMAPS, json=configmap("made-after-save")).status_code == 201

        refused = pkube("etcd", "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir))
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"pkube: a cluster is running in {data_dir} (pid ")
        assert refused.stderr.count("\n") == 1

        assert pkube("down", "--data-dir", str(data_dir)).returncode == 0
        restored = pkube("etcd", "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir))
        assert restored.returncode == 0, restored.stderr
        assert f"the previous etcd data is kept in {data_dir}/etcd.before-restore-" in restored.stdout
        cluster = start_cluster(data_dir, port)
        with cluster.http() as http:
            names = {item["metadata"]["name"] for item in http.get(CONFIGMAPS).json()["items"]}
            secret = http.get("/api/v1/namespaces/default/secrets/kept-secret")
        assert {"kept", "deleted-after-save"} <= names and "made-after-save" not in names
        assert secret.status_code == 200 and secret.json()["data"] == {"k": "dg=="}

        defragged = pkube("etcd", "defrag", "--data-dir", str(data_dir))
        assert defragged.returncode == 0, defragged.stderr
        assert defragged.stdout.startswith("etcd compacted at revision ")
        with cluster.http() as http:     # still serving after compaction and defragmentation
            assert http.post(CONFIGMAPS, json=configmap("after-defrag")).status_code == 201
    finally:
        pkube("down", "--data-dir", str(data_dir))
