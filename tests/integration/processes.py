"""Helpers for tests that run pkube components as real processes (``python -m pkube.scheduler``,
``python -m pkube.controllers``) against the test's apiserver."""

import os
import subprocess
import sys
from pathlib import Path

from pkube.client.resources import LEASES

REPO = Path(__file__).resolve().parents[2]


def start_component(module: str, args: list[str], log_path) -> subprocess.Popen:
    """``python -m <module> <args>`` from the repo root, stdout and stderr to ``log_path``.
    The caller stops it (see ``stop_all``)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def stop_all(procs) -> None:
    """Terminate every process still running (kill one that ignores it for 10 s) and reap it."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def lease_holder(api, name: str, namespace: str):
    """The Lease's holderIdentity; None while the Lease does not exist yet."""
    try:
        return api.get(LEASES, name, namespace)["spec"].get("holderIdentity")
    except Exception:  # noqa: BLE001 - not created yet
        return None
