"""The apiserver started before etcd waits for it (as kube-apiserver does) instead of exiting,
and says in one line when etcd never comes."""

from __future__ import annotations

import subprocess
import sys

import httpx

from pkube.cluster.etcd import EtcdProcess, free_port
from tests.helpers.waiting import wait_for


def apiserver(etcd_port: int, port: int, wait: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pkube.apiserver", "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                             "--port", str(port), "--etcd-wait", str(wait)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_apiserver_started_before_etcd_serves_once_etcd_is_up(tmp_path):
    etcd_port, port = free_port(), free_port()
    proc = apiserver(etcd_port, port, 60)
    etcd = None
    try:
        wait_for(lambda: "waiting for etcd" in _stderr_line(proc), timeout=30)
        etcd = EtcdProcess(tmp_path / "etcd", client_port=etcd_port).start()
        wait_for(lambda: ready(port), timeout=60)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
        if etcd is not None:
            etcd.stop()


def test_no_etcd_at_all_is_one_clear_line_and_a_non_zero_exit():
    proc = apiserver(free_port(), free_port(), 1)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert err.strip().splitlines()[-1].startswith("apiserver: etcd did not answer within 1s")
    assert "Traceback" not in err


def _stderr_line(proc: subprocess.Popen) -> str:
    return proc.stderr.readline()
