"""Child processes of a local cluster: start, wait healthy, watch, restart, stop."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional


class ComponentError(RuntimeError):
    """A component could not be started or did not become healthy."""


@dataclass
class Component:
    """One supervised process.

    ``health_url`` (optional) must answer 200 before start() returns. The
    process gets its own session so a Ctrl-C at the terminal reaches only the
    supervisor, which then stops components in order. With ``final_on_success``
    an exit with code 0 (the process was asked to stop, e.g. a node's `pkube
    down`) is final: `watch_components` does not restart it.
    """

    name: str
    argv: list[str]
    log_path: Path
    health_url: Optional[str] = None
    health_ca: Optional[str] = None      # the CA file verifying an https health_url
    env: Optional[dict] = None
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    restarts: int = 0
    final_on_success: bool = False

    def stopped_for_good(self) -> bool:
        """It exited 0 and that is final (``final_on_success``)."""
        return self.final_on_success and self.proc is not None and self.proc.poll() == 0

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the process and wait until it is healthy; raise ComponentError."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env=self.env)
        if self.health_url:
            self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ComponentError(f"{self.name} exited with code {self.proc.returncode}; "
                                     f"last lines of {self.log_path}:\n{tail(self.log_path)}")
            if http_ok(self.health_url, self.health_ca):
                return
            time.sleep(0.1)
        self.stop()
        raise ComponentError(f"{self.name} did not become healthy at {self.health_url} in {timeout:.0f}s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def http_ok(url: str, cafile: Optional[str] = None) -> bool:
    """True when GET ``url`` answers 200 within a second (https: verified with `cafile`)."""
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, or '' when it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def watch_components(components: list[Component], should_stop: Callable[[], bool],
                     log: Callable[[str], None], period: float = 1.0,
                     max_backoff: float = 30.0) -> None:
    """Restart components that exit (but those stopped for good), with a growing back-off,
    until should_stop()."""
    next_try: dict[str, float] = {}
    while not should_stop():
        for comp in components:
            if comp.alive() or comp.stopped_for_good():
                continue
            now = time.monotonic()
            if now < next_try.get(comp.name, 0):
                continue
            log(f"{comp.name} exited (code {comp.proc.returncode if comp.proc else '?'}); restarting")
            comp.restarts += 1
            next_try[comp.name] = now + min(max_backoff, 2 ** min(comp.restarts, 5))
            try:
                comp.start()
            except (ComponentError, OSError) as err:
                log(f"{comp.name}: {err}")
        time.sleep(period)
