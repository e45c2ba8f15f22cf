"""Run a real single-member etcd as a child process (for `pkube up` and tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


class EtcdError(RuntimeError):
    """etcd could not be started or did not become healthy."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


@dataclass
class EtcdProcess:
    """One etcd member listening on loopback.

    ``start()`` returns once /health answers; ``stop()`` terminates it and
    waits. The data directory is kept (objects survive a restart).
    """

    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    binary: str = "etcd"
    log_path: Optional[Path] = None
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> "EtcdProcess":
        """Start etcd and wait until it is healthy; raise EtcdError."""
        if shutil.which(self.binary) is None:
            raise EtcdError(f"{self.binary} not found: install the etcd-server package (make setup)")
        self.client_port = self.client_port or free_port()
        self.peer_port = self.peer_port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        log = open(self.log_path or self.data_dir.parent / "etcd.log", "ab")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_healthy(timeout)
        return self

    def _command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [self.binary, "--name", "pkube", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"pkube={peer}",
                "--quota-backend-bytes", str(4 * 1024 ** 3), "--max-request-bytes", str(4 * 1024 ** 2),
                "--logger", "zap", "--log-level", "warn"]

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdError(f"etcd exited with code {self.proc.returncode} (see its log in {self.data_dir.parent})")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise EtcdError(f"etcd did not become healthy on {self.endpoint} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate etcd (SIGTERM, then SIGKILL) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
