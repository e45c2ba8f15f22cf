"""`pkube up` / `pkube down` as a user runs them."""

from __future__ import annotations

import socket
import time

import pytest
import yaml

from pkube.cluster.etcd import free_port
from tests.e2e.conftest import pkube, start_cluster


def test_up_writes_a_working_kubeconfig(cluster):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == cluster.server
    assert oct(cluster.kubeconfig.stat().st_mode & 0o777) == "0o600"
    with cluster.http() as http:
        assert http.get("/readyz").status_code == 200


def test_second_up_on_a_running_dir_is_refused(cluster):
    result = pkube("up", "--data-dir", str(cluster.data_dir), "--port", str(free_port()))
    assert result.returncode != 0
    assert "already running" in result.stderr
    assert "Traceback" not in result.stderr
    with cluster.http() as http:
        assert http.get("/readyz").status_code == 200


def test_port_in_use_gives_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = pkube("up", "-d", "--data-dir", str(tmp_path / "c"), "--port", str(port))
    assert result.returncode != 0
    assert f"port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_without_cluster_fails_cleanly(tmp_path):
    result = pkube("down", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "no cluster is running" in result.stderr


def test_objects_survive_down_and_up(tmp_path):
    data_dir, port = tmp_path / "c", free_port()
    cluster = start_cluster(data_dir, port)
    try:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "1"}}
        with cluster.http() as http:
            created = http.post("/api/v1/namespaces/default/configmaps", json=cm)
        assert created.status_code == 201, created.text
        assert pkube("down", "--data-dir", str(data_dir)).returncode == 0
        assert pkube("down", "--data-dir", str(data_dir)).returncode != 0
        cluster = start_cluster(data_dir, port)
        with cluster.http() as http:     # the same CA and certificates after a restart
            got = http.get("/api/v1/namespaces/default/configmaps/kept")
        assert got.status_code == 200
        assert got.json()["data"] == {"a": "1"}
        log = (data_dir / "pkube.log").read_text()   # the addons of the first start are found, not made again
        assert "could not" not in log, log
    finally:
        pkube("down", "--data-dir", str(data_dir))
