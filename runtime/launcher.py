"""A fast `pdocker` command: `python -m runtime.launcher PATH` writes PATH, an executable
script that runs runtime.cli in an isolated interpreter (`-I -S`).

Why: the console script pip generates honours PYTHONDONTWRITEBYTECODE, and pip compiles
site-packages but not an editable project, so where that variable is set (this team's
machines) every `pdocker` recompiles runtime/*.py: about a third of a `pdocker run` (see
bench/runtime.py --baseline). It also runs `site` (every .pth file of the venv, with
setuptools' editable finder), a few milliseconds more. The written script instead:

- starts Python with `-I -S` (no site, no user site, no PYTHON* variables: bytecode is
  cached under runtime/__pycache__ even where PYTHONDONTWRITEBYTECODE is set);
- puts exactly the project root and the venv's site-packages on sys.path (the paths are
  baked in when the script is written: rerun after moving the checkout or the venv);
- keeps PYTHONUNBUFFERED's effect (stdout/stderr written through), which `-I` would drop;
- collects cyclic garbage less often (GC_THRESHOLD): importing the run path allocates tens
  of thousands of objects, none garbage, and the default threshold (700) makes the collector
  walk them dozens of times; long-running commands (attach, logs -f) still collect.

Behaviour is otherwise that of `python -m runtime`. Idempotent; the file is replaced
atomically, so a running `pdocker` is never left with half a script.
"""

from __future__ import annotations

import os
import sys

GC_THRESHOLD = 100_000   # allocations between young collections (CPython's default: 700)

TEMPLATE = """#!{python} -IS
# pdocker: written by `python -m runtime.launcher` (see runtime/launcher.py); do not edit.
import gc
import sys
gc.set_threshold({gc_threshold})
sys.path[:0] = {front!r}
sys.path.extend({back!r})
if __import__("os").environ.get({unbuffered_env!r}):
    sys.stdout.reconfigure(write_through=True)
    sys.stderr.reconfigure(write_through=True)
from runtime.cli import main
sys.exit(main())
"""


def project_root() -> str:
    """The directory holding the `runtime` package (the checkout, for an editable install)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_text(python: str = sys.executable) -> str:
    """The launcher script for interpreter `python` (this venv's by default)."""
    import sysconfig   # here: `python -m runtime` imports this module for GC_THRESHOLD only
    packages = [p for p in dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
                if p and os.path.isdir(p)]
    return TEMPLATE.format(python=python, front=[project_root()], back=packages,
                           unbuffered_env="PYTHONUNBUFFERED", gc_threshold=GC_THRESHOLD)


def install(path: str, python: str = sys.executable) -> None:
    """Write the launcher at `path` (mode 0755), replacing what is there."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(script_text(python))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m runtime.launcher PATH   (e.g. .venv/bin/pdocker)", file=sys.stderr)
        return 2
    install(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
