"""Run a real etcd as a child process (for `pkube up` and tests): one member, or each
member of a cluster (``EtcdProcess(..., name=, initial_cluster=)``, all launched before any
is waited for, since a member is healthy only once a quorum is up: ``start_members``)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pkube.cluster import etcdpki
from pkube.cluster.etcdpki import ADMIN_CLIENT, tls_of

# Applied raft entries a member keeps in memory before it snapshots and truncates its log
# (plus 5,000 for slow followers). etcd 3.5's default, 100,000, makes a member's memory grow
# with every write for hours of a busy cluster (each entry holds the whole request: a pod is
# kilobytes); 10,000 is etcd 3.6's default, as it was before 3.2 (docs/reliability.md).
SNAPSHOT_COUNT = 10_000


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
    """One etcd member listening on ``host`` (loopback by default).

    ``start()`` returns once /health answers; ``stop()`` terminates it and
    waits. The data directory is kept (objects survive a restart). A member of
    a cluster has its ``name`` and the ``initial_cluster`` (``name=peer-url,...``);
    without one it is a cluster of its own; ``existing`` joins a cluster that runs
    already (after ``etcdctl member add``). With ``pki_dir`` (the member's
    certificates there, pkube/cluster/etcdpki.py) clients and peers speak HTTPS and must
    show a certificate of the etcd CA.
    """

    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    binary: str = "etcd"
    log_path: Optional[Path] = None
    name: str = "pkube"
    host: str = "127.0.0.1"
    initial_cluster: str = ""
    quota_backend_bytes: int = 4 * 1024 ** 3   # etcd refuses writes beyond it (docs/operations.md)
    snapshot_count: int = SNAPSHOT_COUNT        # raft entries kept in memory until a snapshot
    existing: bool = False
    pki_dir: Optional[Path] = None               # TLS with pkube/cluster/etcdpki.py's certificates
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.pki_dir is not None else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"

    def start(self, timeout: float = 20.0) -> "EtcdProcess":
        """Start etcd and wait until it is healthy; raise EtcdError."""
        self.launch()
        self.wait_healthy(timeout)
        return self

    def launch(self) -> "EtcdProcess":
        """Start etcd without waiting for it (see ``wait_healthy``); raise EtcdError."""
        if shutil.which(self.binary) is None:
            raise EtcdError(f"{self.binary} not found: install etcd 3.5 (make setup: scripts/install-etcd.sh)")
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        log = open(self.log_path or self.data_dir.parent / "etcd.log", "ab")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def command(self) -> list[str]:
        """etcd's argv (ports chosen by ``launch``)."""
        return self._command()

    def _command(self) -> list[str]:
        peer = self.peer_url
        return [self.binary, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
                "--initial-cluster-state", "existing" if self.existing else "new",
                "--quota-backend-bytes", str(self.quota_backend_bytes), "--max-request-bytes", str(4 * 1024 ** 2),
                "--snapshot-count", str(self.snapshot_count),
                "--logger", "zap", "--log-level", "warn", *self._tls_flags()]

    def _tls_flags(self) -> list[str]:
        if self.pki_dir is None:
            return []
        server, peer = tls_of(self.pki_dir, f"{self.name}-server"), tls_of(self.pki_dir, f"{self.name}-peer")
        return ["--cert-file", str(server.cert), "--key-file", str(server.key), "--client-cert-auth",
                "--trusted-ca-file", str(server.ca), "--peer-cert-file", str(peer.cert),
                "--peer-key-file", str(peer.key), "--peer-client-cert-auth", "--peer-trusted-ca-file", str(peer.ca)]

    def client_context(self) -> Optional[ssl.SSLContext]:
        """What a client of this member needs (pkube's admin client certificate); None without TLS."""
        if self.pki_dir is None:
            return None
        admin = tls_of(self.pki_dir, ADMIN_CLIENT)
        context = ssl.create_default_context(cafile=str(admin.ca))
        context.load_cert_chain(admin.cert, admin.key)
        return context

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Return once /health answers 200; stop it and raise EtcdError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdError(f"etcd exited with code {self.proc.returncode} (see its log in {self.data_dir.parent})")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1,
                                            context=self.client_context()) as resp:
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


def start_members(data_root: Path, count: int, timeout: float = 30.0,
                  pki_dir: Optional[Path] = None) -> list[EtcdProcess]:
    """An etcd cluster of ``count`` members on loopback (data and log under ``data_root``/NAME),
    started together and returned once every member is healthy; on failure every member is
    stopped and EtcdError raised. With ``pki_dir``, over TLS (pkube/cluster/etcdpki.py's
    certificates, made there when missing)."""
    members = [EtcdProcess(data_root / f"etcd{i}", name=f"etcd{i}", log_path=data_root / f"etcd{i}.log",
                           client_port=free_port(), peer_port=free_port(), pki_dir=pki_dir) for i in range(count)]
    if pki_dir is not None:
        for member in members:
            etcdpki.ensure(pki_dir, member.name, (member.host,))
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for member in members:
            member.initial_cluster = initial
            member.launch()
        for member in members:
            member.wait_healthy(timeout)
    except BaseException:
        for member in members:
            member.stop()
        raise
    return members
