"""A fast `pdocker` command: `python -m runtime.launcher PATH` writes PATH, an executable
script that runs runtime.cli in an isolated interpreter (`-I -S`).

Why: the console script pip generates runs `site`, which processes every .pth file of the
venv — with an editable install of this project that means importing setuptools' finder
(importlib.util, pathlib, ...) — and honours PYTHONDONTWRITEBYTECODE, so on machines that
set it every `pdocker` recompiles runtime/*.py. The written script instead:

- starts Python with `-I -S` (no site, no user site, no PYTHON* variables: bytecode is
  cached under runtime/__pycache__ even where PYTHONDONTWRITEBYTECODE is set);
- puts exactly the project root and the venv's site-packages on sys.path (the paths are
  baked in when the script is written: rerun after moving the checkout or the venv);
- keeps PYTHONUNBUFFERED's effect (stdout/stderr written through), which `-I` would drop.

Behaviour is otherwise that of `python -m runtime`. Idempotent; the file is replaced
atomically, so a running `pdocker` is never left with half a script.
"""

from __future__ import annotations

import os
import sys
import sysconfig

TEMPLATE = """#!{python} -IS
# pdocker: written by `python -m runtime.launcher` (see runtime/launcher.py); do not edit.
import sys
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
    packages = [p for p in dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
                if p and os.path.isdir(p)]
    return TEMPLATE.format(python=python, front=[project_root()], back=packages,
                           unbuffered_env="PYTHONUNBUFFERED")


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
