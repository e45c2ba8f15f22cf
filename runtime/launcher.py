"""pdocker's launcher: the `pdocker` script that `make setup` installs in place of pip's
console script, so that each command starts a bare interpreter (`python -I -S`).

Why: pip's console script starts Python with `site`, which reads the venv's .pth files; the
one of pkube's editable install loads setuptools' import finder, which imports pathlib, re,
importlib.util and more. That is 15-20 ms of every pdocker command before pdocker runs. The
launcher instead puts the project directory first on sys.path and the venv's site-packages
after the standard library (where `site` would put them), without processing .pth files:
nothing pdocker imports needs one. `-I` also keeps PYTHON* variables and the user's site
directory out, as a system tool should.

It also ends the process with os._exit once the command is done and its output flushed:
tearing down an interpreter (module dicts, the GC's last collection) is several more
milliseconds nobody waits for. Only when no other non-daemon thread still runs, which a
normal exit would wait for.

`python -m runtime.launcher PATH` writes the script at PATH (mode 755) for this
interpreter and this checkout; see docs/runtime.md, "Where a pdocker run spends its time".
"""

from __future__ import annotations

import os
import sys

SCRIPT = '''#!{python} -IS
"""pdocker, written by `python -m runtime.launcher` (see runtime/launcher.py)."""
import sys
sys.path[:0] = [{project!r}]
sys.path += {site_packages!r}
from runtime.launcher import run
run()
'''


def script_text(python: str, project: str, site_packages: list[str]) -> str:
    """The launcher script for interpreter `python`, with `project` (the directory holding
    the runtime package) and `site_packages` on sys.path."""
    if any(c.isspace() for c in python):
        raise ValueError(f"interpreter path {python!r}: a #! line cannot hold spaces")
    return SCRIPT.format(python=python, project=project, site_packages=list(site_packages))


def install(path: str) -> None:
    """Write the launcher for this interpreter and checkout at `path` (replaced atomically)."""
    import site
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = script_text(sys.executable, project, site.getsitepackages())
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


# the verbs that move a process into a container's cgroups (see runtime/migrations.py)
STARTING_VERBS = frozenset({"run", "start", "restart", "exec"})


def verb_of(argv: list[str]) -> str | None:
    """The verb of a pdocker command line: its first word that is neither an option nor the
    value of one (pdocker's global options all take a value)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg and arg not in ("-h", "--help")
        else:
            return arg
    return None


def run() -> None:
    """Run pdocker's main with sys.argv and exit with its status (never returns). A command
    that starts a process first opens the kernel's window for cheap cgroup moves, so that
    the grace period it costs passes while the imports below run."""
    if verb_of(sys.argv[1:]) in STARTING_VERBS:
        from runtime.migrations import keep_migrations_fast
        keep_migrations_fast()
    from runtime.cli import main
    try:
        code = main()
    except SystemExit as e:   # argparse's --help and its exit()
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):   # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    _exit(code)


def _exit(code: int) -> None:
    """Flush our output, then leave without the interpreter's teardown, unless a non-daemon
    thread is still running (a normal exit waits for it)."""
    threading = sys.modules.get("threading")
    if threading is not None and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:   # `pdocker ps | head`: the reader left
        pass
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m runtime.launcher PATH   (writes the pdocker launcher script at PATH)")
    install(sys.argv[1])
